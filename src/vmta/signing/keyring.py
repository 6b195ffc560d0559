"""The stored DKIM keys as ``cryptography`` key objects, loaded once and reloaded only
when the table changed: a signer never parses a PEM per message.

At most once a second (``ttl``) a thread of its own reads the table's fingerprint (count
and revisions, ``DkimKeyRepository.fingerprint``), in the background: only a different
one loads the keys again, and no message waits for it once the keys were loaded (an
injection must answer within its deadline when the database stops answering).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from vmta.domain.clock import Clock
from vmta.domain.config.dkim_key import DkimKey, key_of
from vmta.resilience.outage_log import OutageLog
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
        self._reloading: asyncio.Task[None] | None = None
        self._outage = OutageLog(log, "the DKIM keys' table")
        # Its own thread, for the reason of message_signer.SIGNING_THREADS.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="dkim-keyring")

    async def keys(self, *, fresh: bool = False) -> KeySet:
        """The keys. Once they are loaded, a message never waits for the database: past
        ``ttl`` a reload starts in the background and the keys held serve meanwhile (a
        key changed this very second may miss a message, as every cached setting may).
        The first load waits, and so does ``fresh`` (a message names a key not held)."""
        if self._fingerprint is None or fresh:
            async with self._lock:
                await self._reload()
                self._checked_until = self._clock.now() + self._ttl
            return self._keys
        now = self._clock.now()
        if now >= self._checked_until and (self._reloading is None or self._reloading.done()):
            self._checked_until = now + self._ttl
            self._reloading = asyncio.create_task(self._reload_in_background())
        return self._keys

    def invalidate(self) -> None:
        """Forget what is held: the next ``keys()`` waits for a load."""
        self._fingerprint = None

    async def _reload(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._refresh)

    async def _reload_in_background(self) -> None:
        try:
            async with self._lock:
                await self._reload()
        except Exception as exc:  # the database away: the keys held go on signing
            self._outage.failed("reloading the DKIM keys failed; signing with those held", exc)
        else:
            self._outage.worked()

    def _refresh(self) -> None:
        with self._store.read() as conn:
            repo = DkimKeyRepository(conn)
            fingerprint = repo.fingerprint()
            if fingerprint == self._fingerprint:
                return
            records = repo.signing_keys()
        self._keys = key_set(records)
        self._fingerprint = fingerprint
