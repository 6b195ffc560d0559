"""Building the delivery engine from its parts, in dependency order: each part gets what
it needs through its constructor."""

from __future__ import annotations

import asyncio

from vmta.delivery.engine.connection_worker import ConnectionWorker
from vmta.delivery.engine.delivery_engine import DeliveryEngine, EngineSettings
from vmta.delivery.engine.dispatcher import Dispatcher
from vmta.delivery.engine.inflight_journal import InflightJournal
from vmta.delivery.engine.occupancy import Occupancy
from vmta.delivery.engine.outcome_recorder import OutcomeRecorder
from vmta.delivery.engine.scheduler import Scheduler
from vmta.delivery.engine.task_set import TaskSet
from vmta.delivery.outcomes.activity_log import ActivityLog
from vmta.delivery.outcomes.bounces import BounceMailer
from vmta.delivery.outcomes.delivery_log import DeliveryLog
from vmta.delivery.routing.egress_health import EgressHealth
from vmta.delivery.routing.envelope_sender import EnvelopeSenders
from vmta.delivery.routing.router import Router
from vmta.delivery.throttles.throttle_backend import ThrottleBackend
from vmta.delivery.throttles.throttle_backoffs import ThrottleBackoffs
from vmta.domain.attempts.engine_metrics import EngineMetrics
from vmta.domain.attempts.spool_port import Spool
from vmta.domain.attempts.transport_port import Transport
from vmta.domain.clock import Clock


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
        stopping=dispatcher.stopping,
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
