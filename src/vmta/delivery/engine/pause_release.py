"""A removed MailerQ pause releases its mail within seconds, on every node.

Paused recipients wait in the spool for the router's recheck (a minute): looking at every
paused recipient every few seconds would cost a routing decision each, for mail that
stays paused. Instead each node reads a fingerprint of the small pauses table every
``interval`` seconds; when a pause it saw is gone or changed, it forgets its cached
delivery controls and makes the recipients a pause holds due now
(``store.paused_recipients``), then wakes the scheduler, whose poll claims them. The
release is repeated at the next look, for a hold decided on the old controls while the
first release ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from vmta.delivery.routing.config_view import ConfigView
from vmta.delivery.routing.router import PAUSED_REASON_PREFIX
from vmta.domain.clock import Clock
from vmta.store.paused_recipients import pauses_fingerprint, release_paused
from vmta.store.store import Store

log = logging.getLogger(__name__)

WATCH_INTERVAL = 2.0  # seconds between looks: a removal takes effect within about this


class PauseRelease:
    def __init__(
        self,
        store: Store,
        config: ConfigView,
        clock: Clock,
        wake: Callable[[], None],
        interval: float = WATCH_INTERVAL,
    ) -> None:
        self._store = store
        self._config = config
        self._clock = clock
        self._wake = wake
        self.interval = interval
        self._seen: frozenset[tuple[str, float | None]] | None = None
        self._again = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def look(self) -> int:
        """One look: the recipients made due now (0 when no pause went away)."""
        current = await asyncio.to_thread(pauses_fingerprint, self._store)
        previous, self._seen = self._seen, current
        gone = previous is not None and not previous <= current
        if not gone and not self._again:
            return 0
        self._again = gone  # once more at the next look
        self._config.invalidate()
        now = self._clock.now()
        released = await asyncio.to_thread(release_paused, self._store, now, PAUSED_REASON_PREFIX)
        if released:
            log.info("%d recipient(s) released after a pause was removed", released)
            self._wake()
        return released

    async def _loop(self) -> None:
        while True:
            try:
                await self.look()
            except Exception:
                log.exception("checking for removed pauses failed; trying again")
            await self._clock.sleep(self.interval)
