"""The filter of a long suppression list's keys (delivery/routing/suppression_keys.py): it reads
only what was added since its last refresh (with a look-back for PostgreSQL's commits out
of order), never answers "no" for a key it was given, and forgets deleted keys at its
hourly full reload."""

from __future__ import annotations

from vmta.delivery.routing.suppression_keys import FULL_RELOAD, LOOKBACK, SuppressionKeys


class Table:
    def __init__(self) -> None:
        self.rows: dict[int, str] = {}
        self.asked: list[int] = []

    def keys_from(self, first: int) -> list[tuple[int, str]]:
        self.asked.append(first)
        return sorted((n, k) for n, k in self.rows.items() if n >= first)


def test_refresh_reads_what_was_added_and_forgets_deleted_keys_hourly() -> None:
    table = Table()
    table.rows = {n: f"k{n}" for n in range(1, 3001) if n != 2990}  # 2990: not committed yet
    keys = SuppressionKeys()
    assert not keys.may_hold(["k1"])  # nothing loaded yet
    keys.refresh(table.keys_from, now=0.0)
    assert table.asked == [0] and len(keys) == 2999
    assert keys.may_hold(["nothing", "k2999"]) and not keys.may_hold(["k0", "k3001"])

    table.rows[3002] = "new"
    table.rows[2990] = "committed-late"  # a smaller number committed after larger ones
    del table.rows[5]
    keys.refresh(table.keys_from, now=1.0)
    assert table.asked[-1] == 3000 - LOOKBACK
    assert keys.may_hold(["new"]) and keys.may_hold(["committed-late"])
    assert keys.may_hold(["k5"])  # a deleted key stays until the full reload: a query finds none

    keys.refresh(table.keys_from, now=1.0 + FULL_RELOAD)
    assert table.asked[-1] == 0 and not keys.may_hold(["k5"]) and len(keys) == 3000
