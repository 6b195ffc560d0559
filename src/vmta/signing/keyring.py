"""The stored DKIM keys as ``cryptography`` key objects, loaded once and reloaded only
when the table changed: a signer never parses a PEM per message.

At most once a second (``ttl``) a worker thread reads the table's fingerprint (count and
revisions, ``DkimKeyRepository.fingerprint``); only a different one loads the keys again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from vmta.delivery.clock import Clock
from vmta.domain.dkim_key import DkimKey, key_of
from vmta.signing.keys import KeyRefused, PrivateKey, load
from vmta.store.dkim_keys import DkimKeyRepository
from vmta.store.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedKey:
    domain: str
    selector: str
    key: PrivateKey

    def __repr__(self) -> str:  # never the key
        return f"LoadedKey({self.selector}._domainkey.{self.domain})"


@dataclass(frozen=True)
class KeySet:
    by_name: dict[tuple[str, str], LoadedKey] = field(default_factory=dict)
    defaults: dict[str, LoadedKey] = field(default_factory=dict)

    def find(self, domain: str, selector: str | None) -> LoadedKey | None:
        """The key of ``domain`` with ``selector`` (ignoring case), or the domain's default
        when ``selector`` is None."""
        if selector is None:
            return self.defaults.get(domain.lower())
        return self.by_name.get(key_of(domain, selector))


def key_set(keys: Iterable[DkimKey]) -> KeySet:
    loaded = KeySet()
    for record in keys:
        try:
            key = load(record.material.private_pem)
        except KeyRefused as refused:
            # Keys are checked when stored; one that no longer loads is skipped, named.
            log.error("DKIM key id %s (%s) cannot be loaded: %s", record.id, record.domain, refused)
            continue
        entry = LoadedKey(record.domain, record.selector, key)
        loaded.by_name[key_of(record.domain, record.selector)] = entry
        if record.default_for_domain:
            loaded.defaults[record.domain.lower()] = entry
    return loaded


class Keyring:
    def __init__(self, store: Store, clock: Clock, ttl: float = 1.0) -> None:
        self._store = store
        self._clock = clock
        self._ttl = ttl
        self._keys = KeySet()
        self._fingerprint: tuple[int, int, int] | None = None
        self._checked_until = float("-inf")
        self._lock = asyncio.Lock()
        # Its own thread, for the reason of message_signer.SIGNING_THREADS.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="dkim-keyring")

    async def keys(self) -> KeySet:
        if self._clock.now() < self._checked_until:
            return self._keys
        async with self._lock:
            if self._clock.now() >= self._checked_until:
                await asyncio.get_running_loop().run_in_executor(self._thread, self._refresh)
                self._checked_until = self._clock.now() + self._ttl
        return self._keys

    def invalidate(self) -> None:
        self._checked_until = float("-inf")

    def _refresh(self) -> None:
        with self._store.read() as conn:
            repo = DkimKeyRepository(conn)
            fingerprint = repo.fingerprint()
            if fingerprint == self._fingerprint:
                return
            records = repo.signing_keys()
        self._keys = key_set(records)
        self._fingerprint = fingerprint
