"""Building the delivery engine from its parts, in dependency order: each part gets what
it needs through its constructor."""

from __future__ import annotations

import asyncio

from vmta.delivery.activity_log import ActivityLog
from vmta.delivery.bounces import BounceMailer
from vmta.delivery.clock import Clock
from vmta.delivery.connection_worker import ConnectionWorker
from vmta.delivery.delivery_log import DeliveryLog
from vmta.delivery.dispatcher import Dispatcher
from vmta.delivery.egress_health import EgressHealth
from vmta.delivery.engine import DeliveryEngine, EngineSettings
from vmta.delivery.engine_metrics import EngineMetrics
from vmta.delivery.envelope_sender import EnvelopeSenders
from vmta.delivery.inflight_journal import InflightJournal
from vmta.delivery.occupancy import Occupancy
from vmta.delivery.outcome_recorder import OutcomeRecorder
from vmta.delivery.router import Router
from vmta.delivery.scheduler import Scheduler
from vmta.delivery.task_set import TaskSet
from vmta.delivery.throttle_backend import ThrottleBackend
from vmta.delivery.throttle_backoffs import ThrottleBackoffs
from vmta.delivery.transport import Transport
from vmta.domain.spool_port import Spool


def build_engine(
    *,
    spool: Spool,
    router: Router,
    transport: Transport,
    throttles: ThrottleBackend,
    clock: Clock,
    settings: EngineSettings,
    delivery_log: DeliveryLog,
    journal: InflightJournal,
    health: EgressHealth,
    hostname: str,
    metrics: EngineMetrics | None = None,
    backoffs: ThrottleBackoffs | None = None,
    senders: EnvelopeSenders | None = None,
    activity: ActivityLog | None = None,
) -> DeliveryEngine:
    due_now = asyncio.Event()
    tasks = TaskSet()
    occupancy = Occupancy(settings.max_in_memory)
    bounces = BounceMailer(
        spool,
        clock,
        hostname=hostname,
        max_lifetime=settings.retry.max_lifetime,
        due_now=due_now,
        metrics=metrics,
    )
    recorder = OutcomeRecorder(
        spool=spool,
        clock=clock,
        settings=settings.recorder(),
        delivery_log=delivery_log,
        occupancy=occupancy,
        bounces=bounces,
        metrics=metrics,
        backoffs=backoffs,
        activity=activity,
    )
    worker = ConnectionWorker(
        transport=transport,
        recorder=recorder,
        spool=spool,
        journal=journal,
        health=health,
        clock=clock,
        spawn=tasks.spawn,
        metrics=metrics,
        senders=senders,
    )
    dispatcher = Dispatcher(
        router=router,
        throttles=throttles,
        recorder=recorder,
        clock=clock,
        retry=settings.retry,
        settings=settings.dispatch(),
        spawn=tasks.spawn,
        open_connection=worker.run,
        metrics=metrics,
        backoffs=backoffs,
        senders=senders,
    )
    scheduler = Scheduler(
        spool=spool,
        clock=clock,
        settings=settings.scheduler(),
        occupancy=occupancy,
        dispatch=dispatcher.dispatch,
        spawn=tasks.spawn,
        due_now=due_now,
    )
    return DeliveryEngine(
        spool=spool,
        clock=clock,
        settings=settings,
        scheduler=scheduler,
        dispatcher=dispatcher,
        recorder=recorder,
        occupancy=occupancy,
        throttles=throttles,
        journal=journal,
        tasks=tasks,
        router=router,
    )
