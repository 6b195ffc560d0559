"""The keys of a long suppression list, held in memory as a filter: a recipient none of
whose keys (its address, its domain) is in the set is not suppressed, with no query; one
whose key is there is looked up in the store by its indexed key (delivery/routing/config_view.py).

The set is kept up to date without reading the list again: entries are numbered in
creation order, so each refresh reads only the keys numbered after the last one seen
(less ``LOOKBACK``: on PostgreSQL two transactions may commit their numbers out of order).
A POST that replaces an entry keeps its key, and its new code is read by the query. A
deleted entry's key stays until the next full reload (hourly): meanwhile it only costs
its recipients a query that finds nothing, so the answer is always exact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

LOOKBACK = 1000  # entry numbers read again at each refresh
FULL_RELOAD = 3600.0  # seconds between reloads that forget deleted keys

# Reads (entry number, key) pairs numbered from the given one on, in order.
KeysFrom = Callable[[int], Iterable[tuple[int, str]]]


class SuppressionKeys:
    def __init__(self) -> None:
        self._keys: frozenset[str] | set[str] = frozenset()
        self._last = 0
        self._loaded_at: float | None = None

    def __len__(self) -> int:
        return len(self._keys)

    def refresh(self, keys_from: KeysFrom, now: float) -> None:
        """Read the keys added since the last refresh (all of them at first, and hourly).
        Runs on a worker thread: the new set replaces the old one in one assignment."""
        if self._loaded_at is None or now - self._loaded_at >= FULL_RELOAD:
            fresh: set[str] = set()
            last = 0
            for number, key in keys_from(0):
                fresh.add(key)
                last = number
            self._keys, self._last, self._loaded_at = fresh, last, now
            return
        rows = list(keys_from(max(0, self._last - LOOKBACK)))
        new = [key for _, key in rows if key not in self._keys]
        if new:
            grown = set(self._keys)
            grown.update(new)
            self._keys = grown
        if rows:
            self._last = max(self._last, rows[-1][0])

    def may_hold(self, keys: Iterable[str]) -> bool:
        """Might one of ``keys`` have an entry? False is certain."""
        current = self._keys
        return any(key in current for key in keys)
