"""The delivery engine as one thing to start and stop: a scheduler (what is due), a
dispatcher (ready queues and connections per egress path, in ``dispatcher`` and
``connection_worker``) and an outcome recorder (retry policy, persistence, bounces).

Flow (docs/architecture.md): spool → scheduler (poll, and the fast path ``submit``) →
dispatcher: router → ready queue per egress path → connection worker → outcome recorder
→ spool. The parts are built and wired in ``vmta.runtime.delivery_wiring``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from vmta.delivery.engine.dispatcher import Dispatcher, DispatchSettings
from vmta.delivery.engine.inflight_journal import InflightJournal
from vmta.delivery.engine.occupancy import Occupancy
from vmta.delivery.engine.outcome_recorder import OutcomeRecorder, RecorderSettings
from vmta.delivery.engine.scheduler import Scheduler, SchedulerSettings
from vmta.delivery.engine.task_set import TaskSet
from vmta.delivery.routing.router import Router
from vmta.delivery.throttles.throttle_backend import ThrottleBackend
from vmta.domain.attempts.retry_schedule import RetrySchedule
from vmta.domain.attempts.spool_port import Spool
from vmta.domain.attempts.spool_records import Job
from vmta.domain.clock import Clock
from vmta.resilience.supervisor import supervised

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineSettings:
    """Every setting of the engine's parts, in one place (each part takes its share)."""

    retry: RetrySchedule = field(default_factory=RetrySchedule)
    max_messages_per_connection: int = 1000
    idle_timeout: float = 5.0
    lease_seconds: float = 300.0
    poll_interval: float = 1.0
    claim_batch: int = 500
    max_in_memory: int = 20_000  # recipients held in memory (jobs, not bodies)
    unlimited_connections: int = 20
    finished_retention: float = 86_400.0
    purge_interval: float = 60.0
    purge_batch: int = 1000
    failures_before_delay: int = 3
    failure_delay: float = 60.0
    max_connection_rate: float = 10.0
    pacing_keep_open: float = 0.5
    release_after: float = 60.0
    throttle_recheck: float = 300.0
    store_tries: int = 12

    def scheduler(self) -> SchedulerSettings:
        return SchedulerSettings(
            lease_seconds=self.lease_seconds,
            poll_interval=self.poll_interval,
            claim_batch=self.claim_batch,
            finished_retention=self.finished_retention,
            purge_interval=self.purge_interval,
            purge_batch=self.purge_batch,
        )

    def dispatch(self) -> DispatchSettings:
        return DispatchSettings(
            max_messages_per_connection=self.max_messages_per_connection,
            idle_timeout=self.idle_timeout,
            unlimited_connections=self.unlimited_connections,
            failures_before_delay=self.failures_before_delay,
            failure_delay=self.failure_delay,
            max_connection_rate=self.max_connection_rate,
            pacing_keep_open=self.pacing_keep_open,
            release_after=self.release_after,
            throttle_recheck=self.throttle_recheck,
        )

    def recorder(self) -> RecorderSettings:
        return RecorderSettings(retry=self.retry, store_tries=self.store_tries)


class DeliveryEngine:
    def __init__(
        self,
        *,
        spool: Spool,
        clock: Clock,
        settings: EngineSettings,
        scheduler: Scheduler,
        dispatcher: Dispatcher,
        recorder: OutcomeRecorder,
        occupancy: Occupancy,
        throttles: ThrottleBackend,
        journal: InflightJournal,
        tasks: TaskSet,
        router: Router,
    ) -> None:
        self._spool = spool
        self._clock = clock
        self.settings = settings
        self.scheduler = scheduler
        self.dispatcher = dispatcher
        self.recorder = recorder
        self.occupancy = occupancy
        self.throttles = throttles
        self.journal = journal
        self.tasks = tasks
        self.router = router
        self.recovered_in_flight = 0
        self._renewer: asyncio.Task[None] | None = None

    @property
    def stopping(self) -> bool:
        return self.dispatcher.stopping.is_set()

    @property
    def in_memory(self) -> int:
        return self.occupancy.held

    async def start(self) -> None:
        possibly_sent = self.journal.recover()
        self.recovered_in_flight = len(possibly_sent)
        released = await self._spool.release_own_leases(self._clock.now())
        if possibly_sent:
            log.warning(
                "%d recipient(s) were being delivered when vmta last stopped; their outcome"
                " was not stored, so they will be tried again and may arrive twice",
                len(possibly_sent),
            )
        if released:
            log.info("recovered %d recipient(s) claimed before the last stop", released)
        self.scheduler.start()
        self._renewer = asyncio.ensure_future(
            supervised("connection slot renewal", self._renew_throttles, clock=self._clock)
        )

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking work, let transactions in progress finish (up to ``grace``), give
        what still waits back to the spool."""
        self.dispatcher.stop()  # sets the engine's one stopping event
        await self.scheduler.stop()
        await self.tasks.drain(grace)
        self.recorder.retry_storing = False
        await self.dispatcher.release_all()
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer

    async def _renew_throttles(self) -> None:
        """Keep this node's shared connection slots alive (a no-op for local ones)."""
        interval = float(getattr(self.throttles, "renew_interval", 5.0))
        while True:
            await self._clock.sleep(interval)
            try:
                await self.throttles.renew()
            except Exception:
                log.exception("renewing connection slots failed")

    def room_for(self, recipients: int) -> bool:
        return not self.stopping and self.scheduler.room_for(recipients)

    def submit(self, jobs: Sequence[Job]) -> None:
        if not self.stopping:
            self.scheduler.submit(jobs)

    def wake(self) -> None:
        self.scheduler.wake()

    def path_states(self) -> list[dict[str, Any]]:
        return self.dispatcher.path_states()
