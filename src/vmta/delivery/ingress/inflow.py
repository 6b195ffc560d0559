"""Inflow control: when the spool holds more than the node will take, or the disk under
the data directory runs low, SMTP injection says "try again later" instead of accepting
without bound (Postfix's in_flow_delay and queue-full behaviour, KumoMTA's load shedding).

The queue size is counted in the spool every ``refresh`` seconds (across every node of a
cluster: the spool is shared) and advanced locally by each message accepted between two
counts, so a burst cannot run far past the bound.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from vmta.domain.clock import Clock
from vmta.resilience.outage_log import OutageLog

log = logging.getLogger(__name__)

# RFC 3463 §3.4: X.3.2 "system not accepting network messages"; X.3.1 "mail system full".
QUEUE_FULL = "451 4.3.2 The queue is full; try again later"
DISK_LOW = "452 4.3.1 Insufficient system storage; try again later"


@dataclass(frozen=True)
class InflowSettings:
    max_queued: int = 2_000_000  # recipients waiting in the spool; 0: no bound
    min_free_disk: int = 256 * 1024 * 1024  # bytes free under the data directory; 0: none
    refresh: float = 2.0


class InflowGate:
    def __init__(
        self,
        *,
        count_queued: Callable[[], Awaitable[int]],
        data_dir: Path,
        clock: Clock,
        settings: InflowSettings,
    ) -> None:
        self._measure_outage = OutageLog(log, "measuring the queue")
        self._count_queued = count_queued
        self._data_dir = data_dir
        self._clock = clock
        self.settings = settings
        self.queued = 0
        self.free_disk: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._refused: str | None = None

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            await self._clock.sleep(self.settings.refresh)
            try:
                await self.refresh()
            except Exception as exc:  # every 2 s: one traceback per outage
                self._measure_outage.failed("measuring the queue and the disk failed", exc)
            else:
                self._measure_outage.worked()

    async def refresh(self) -> None:
        self.queued = await self._count_queued()
        if self.settings.min_free_disk:
            usage = await asyncio.to_thread(shutil.disk_usage, self._data_dir)
            self.free_disk = usage.free
        refusal = self.refusal()
        if refusal != self._refused:
            if refusal:
                log.warning("refusing new mail: %s (queued %d)", refusal, self.queued)
            else:
                log.info("accepting new mail again (queued %d)", self.queued)
            self._refused = refusal

    def accepted(self, recipients: int) -> None:
        self.queued += recipients

    def refusal(self) -> str | None:
        """The SMTP reply to give a new transaction, or None to accept it."""
        settings = self.settings
        if settings.max_queued and self.queued >= settings.max_queued:
            return QUEUE_FULL
        if (
            settings.min_free_disk
            and self.free_disk is not None
            and self.free_disk < settings.min_free_disk
        ):
            return DISK_LOW
        return None
