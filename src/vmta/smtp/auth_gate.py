"""Checking an SMTP AUTH name and secret without stalling the listener or helping a
guesser.

The check itself (a database read, and scrypt for an operator-chosen secret) runs in a
worker thread, never on the event loop that serves every session. A positive answer is
remembered for ``cache_seconds`` (as the API does), so a client that authenticates on each
of many connections costs one check per period; a revoked credential stops working
within it. Repeated failures from one client address are slowed down
(``vmta.domain.auth_failures``); the time source and the sleep are injectable so tests
can see the waits asked for without waiting.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable

from vmta.domain.auth_failures import FailureDelays
from vmta.domain.errors import TemporaryError

CACHE_SECONDS = 5.0
CHECK_DEADLINE = 25.0  # seconds
_CACHE_MAX = 10_000

Check = Callable[[str, str], bool]


class AuthGate:
    def __init__(
        self,
        check: Check,
        *,
        delays: FailureDelays | None = None,
        now: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        cache_seconds: float = CACHE_SECONDS,
        deadline: float = CHECK_DEADLINE,
    ) -> None:
        # Public so that tests can wrap or replace them (the clock and the sleep above all).
        self.check = check
        self.delays = delays or FailureDelays()
        self.now = now
        self.sleep = sleep
        self._cache_seconds = cache_seconds
        self._deadline = deadline
        self._cache: dict[str, float] = {}  # key -> when the positive answer expires

    async def verify(self, client: str, name: str, secret: str) -> bool:
        """True when ``name`` and ``secret`` may authenticate, after any wait ``client``
        has earned by failing before."""
        wait = self.delays.delay(client, self.now())
        if wait > 0:
            await self.sleep(wait)
        # Keyed by a hash: the cache never holds a secret in clear.
        key = hashlib.sha256(f"{name}\0{secret}".encode("utf-8", "surrogatepass")).hexdigest()
        expires = self._cache.get(key)
        if expires is not None and self.now() < expires:
            self.delays.succeeded(client)
            return True
        try:
            # A deadline, as for every database wait on the injection path: a database
            # that went silent costs the client this long, not the length of the outage.
            ok = await asyncio.wait_for(asyncio.to_thread(self.check, name, secret), self._deadline)
        except TimeoutError:
            raise TemporaryError("the credential check got no answer in time") from None
        if ok:
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[key] = self.now() + self._cache_seconds
            self.delays.succeeded(client)
        else:
            self._cache.pop(key, None)
            self.delays.failed(client, self.now())
        return ok
