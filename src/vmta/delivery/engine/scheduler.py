"""What is due: recipients just accepted by this node (the fast path), and recipients due
in the spool (the poll), claimed with leases as far as memory allows; plus the periodic
work of the spool (lease heartbeats, purging finished messages)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from vmta.delivery.engine.occupancy import Occupancy
from vmta.domain.attempts.spool_port import Spool
from vmta.domain.attempts.spool_records import Job
from vmta.domain.clock import Clock
from vmta.resilience.outage_log import OutageLog
from vmta.resilience.supervisor import supervised

log = logging.getLogger(__name__)
HEARTBEAT_RETRY = 5.0  # seconds between lease renewals while they fail


@dataclass(frozen=True)
class SchedulerSettings:
    lease_seconds: float = 300.0
    poll_interval: float = 1.0
    claim_batch: int = 500
    # Finished messages (every recipient delivered or failed) are kept this long after they
    # were received, for /api/messages and `vmta queue`, then deleted.
    finished_retention: float = 86_400.0
    purge_interval: float = 60.0
    purge_batch: int = 1000


class Scheduler:
    def __init__(
        self,
        *,
        spool: Spool,
        clock: Clock,
        settings: SchedulerSettings,
        occupancy: Occupancy,
        dispatch: Callable[[list[Job]], Coroutine[Any, Any, None]],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        due_now: asyncio.Event,
        stopping: asyncio.Event | None = None,
    ) -> None:
        self._heartbeat_outage = OutageLog(log, "renewing leases")
        # Polled every second: one traceback an outage, then a line each.
        self._poll_outage = OutageLog(log, "polling the spool")
        self._spool = spool
        self._clock = clock
        self.settings = settings
        self._occupancy = occupancy
        self._dispatch = dispatch
        self._spawn = spawn
        self._due_now = due_now
        self._loops: list[asyncio.Task[None]] = []
        # The engine's one stopping event (shared with the dispatcher and ready queues).
        self.stopping = stopping or asyncio.Event()

    def start(self) -> None:
        # Supervised: a loop that raises is logged and started again, never lost.
        self._loops = [
            asyncio.ensure_future(supervised(name, loop, clock=self._clock))
            for name, loop in (
                ("spool poll", self._poll_loop),
                ("lease heartbeat", self._heartbeat_loop),
                ("purge", self._purge_loop),
            )
        ]

    async def stop(self) -> None:
        self.stopping.set()
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)

    def room_for(self, recipients: int) -> bool:
        """Whether a message of this many recipients may be claimed at acceptance."""
        return not self.stopping.is_set() and self._occupancy.room() >= recipients

    def submit(self, jobs: Sequence[Job]) -> None:
        """Fast path: recipients just accepted and already leased to this node."""
        if not jobs:
            return
        self._occupancy.take(len(jobs))
        self._spawn(self._dispatch(list(jobs)))

    def wake(self) -> None:
        """Look for due work now (an operator asked for a retry, config changed)."""
        self._due_now.set()

    async def _poll_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                room = self._occupancy.room()
                if room > 0:
                    now = self._clock.now()
                    jobs = await self._spool.claim_due(
                        now,
                        min(room, self.settings.claim_batch),
                        now + self.settings.lease_seconds,
                    )
                    if jobs:
                        self._occupancy.take(len(jobs))
                        self._spawn(self._dispatch(jobs))
                        if len(jobs) == self.settings.claim_batch:
                            continue  # more may be due: do not wait
            except Exception as exc:
                self._poll_outage.failed("polling the spool failed; trying again", exc)
            else:
                self._poll_outage.worked()
            self._due_now.clear()
            sleeper = asyncio.ensure_future(self._clock.sleep(self.settings.poll_interval))
            waker = asyncio.ensure_future(self._due_now.wait())
            try:
                await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
                waker.cancel()

    async def _heartbeat_loop(self) -> None:
        interval = self.settings.lease_seconds / 3
        wait = interval
        while not self.stopping.is_set():
            await self._clock.sleep(wait)
            try:
                await self._spool.renew_leases(self._clock.now() + self.settings.lease_seconds)
            except Exception as exc:
                # Tried again soon, not in a third of a lease: the leases must not lapse
                # (another node would send what this one holds) once the database is back.
                self._heartbeat_outage.failed("renewing leases failed", exc)
                wait = min(interval, HEARTBEAT_RETRY)
            else:
                self._heartbeat_outage.worked()
                wait = interval

    async def _purge_loop(self) -> None:
        """Delete finished messages past their retention, a batch at a time, so that the
        spool does not grow with every message ever sent."""
        while not self.stopping.is_set():
            await self._clock.sleep(self.settings.purge_interval)
            try:
                before = self._clock.now() - self.settings.finished_retention
                while not self.stopping.is_set():
                    purged = await self._spool.purge_finished(before, self.settings.purge_batch)
                    if purged < self.settings.purge_batch:
                        break
            except Exception:
                log.exception("purging finished messages failed")
