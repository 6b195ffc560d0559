"""Building the data plane (spool, engine, SMTP listener) and starting and stopping it in
order: the spool gateway first and last, the listener only once the engine is running."""

from __future__ import annotations

import functools
import logging
import socket
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vmta.api.ports import DataPlaneHooks
from vmta.delivery.engine.inflight_journal import InflightJournal
from vmta.delivery.engine.pause_release import PauseRelease
from vmta.delivery.engine.spool_gateway import SpoolGateway
from vmta.delivery.events.event_sender import EventSender
from vmta.delivery.events.event_setup import event_destinations, subscriptions
from vmta.delivery.ingress.inflow import InflowGate
from vmta.delivery.ingress.intake import Intake
from vmta.delivery.outcomes.activity_log import ActivityLog
from vmta.delivery.outcomes.delivery_log import DeliveryLog
from vmta.delivery.routing.config_view import ConfigView
from vmta.delivery.routing.egress_health import EgressHealth
from vmta.delivery.routing.mx_resolver import MxResolver
from vmta.delivery.routing.own_listeners import OwnListeners
from vmta.delivery.routing.router import Router, RouterSettings
from vmta.delivery.throttles.throttle_backend import LocalThrottles, ThrottleBackend
from vmta.delivery.throttles.throttle_backoffs import ThrottleBackoffs
from vmta.domain.attempts.spool_records import Outcome
from vmta.domain.attempts.transport_port import Transport
from vmta.domain.clock import Clock, SystemClock
from vmta.domain.config.credential import secret_matches
from vmta.domain.reports.delivery_event import wants_event
from vmta.feedback.directory import MailboxBook
from vmta.feedback.processor import FeedbackProcessor
from vmta.feedback.verp_signer import VerpSigner
from vmta.runtime.data_plane_settings import (
    DataPlaneSettings,
    data_plane_settings,
    tls_context,
)
from vmta.runtime.delivery_wiring import build_engine
from vmta.runtime.metrics import DeliveryMetrics
from vmta.runtime.node_identity import register_node
from vmta.runtime.settings import Settings
from vmta.runtime.throttle_wiring import PACING_FILE, throttle_backend, throttle_backoffs
from vmta.signing.keyring import Keyring
from vmta.signing.message_signer import MessageSigner
from vmta.smtp.auth_gate import AuthGate
from vmta.smtp.inbound_listener import InboundHandler, InboundSettings, start_inbound_listener
from vmta.smtp.listener import Listener, ListenerSettings, start_listener
from vmta.smtp.session_counts import SharedSessionCounts
from vmta.smtp.transport import SmtpTransport
from vmta.store.credentials import CredentialRepository
from vmta.store.event_outbox import EventOutbox
from vmta.store.inbound_mail import verp_secret
from vmta.store.spool import SqlSpool
from vmta.store.store import Store

if TYPE_CHECKING:
    from vmta.delivery.ingress.amqp_outbox import OutboxConsumer

log = logging.getLogger(__name__)

SESSION_COUNTS = "smtp-sessions.counts"  # smtp/session_counts.py


class CommitNotifier:
    """What the spool gateway tells of each commit, passed on: its latency and outcomes
    to the metrics, and to the event sender that outcomes with events are committed (it
    sends them at once instead of at its next poll; docs/events.md, "Latency")."""

    def __init__(self, metrics: DeliveryMetrics, events: EventSender) -> None:
        self.metrics = metrics
        self.events = events

    def spool_commit(self, seconds: float) -> None:
        self.metrics.spool_commit(seconds)

    def recorded(self, outcomes: Sequence[Outcome]) -> None:
        self.metrics.recorded(outcomes)
        if self.events.destinations and any(wants_event(o) for o in outcomes):
            self.events.outcomes_committed()


def journal_name(worker: int) -> str:
    """The in-flight journal of worker ``worker`` (each process keeps its own)."""
    return "inflight.journal" if worker == 0 else f"inflight-{worker}.journal"


class DataPlane:
    def __init__(
        self,
        store: Store,
        settings: DataPlaneSettings,
        data_dir: Path,
        *,
        clock: Clock | None = None,
        transport: Transport | None = None,
        throttles: ThrottleBackend | None = None,
        backoffs: ThrottleBackoffs | None = None,
        metrics: DeliveryMetrics | None = None,
        worker: int = 0,
    ) -> None:
        """``worker``: which process of ``VMTA_WORKERS`` this is (0: `vmta serve` itself);
        the files only one process may write carry its number."""
        self.store = store
        self.settings = settings
        self.clock = clock or SystemClock()
        # Connection slots and message pacing: this node's memory, or Redis for a cluster
        # (runtime/throttle_wiring.py). Closed last: a clean stop gives its slots back at once.
        self.throttles: ThrottleBackend = throttles or LocalThrottles(
            self.clock, data_dir / PACING_FILE
        )
        engine_settings = settings.engine
        # A name of this process's own; the leases of gone nodes (this data directory's
        # previous run among them) are released when the engine starts.
        identity = register_node(store, data_dir, ttl=engine_settings.lease_seconds)
        self.owner = identity.node_id
        # Every GreenArrow event names the node it comes from (server_id).
        events = settings.events
        destinations = event_destinations(
            replace(events, server_id=events.server_id or settings.hostname)
        )
        self.spool = SqlSpool(
            store,
            self.owner,
            db_lease_seconds=engine_settings.lease_seconds,  # PostgreSQL: the database's clock
            predecessors=identity.predecessors,
            event_subscriptions=subscriptions(destinations),
            bad_address_policy=settings.events.bad_addresses,
        )
        self.events = EventSender(
            EventOutbox(
                store,
                self.owner,
                identity.predecessors,
                # PostgreSQL: the database's clock, as the spool's leases (store/db_clock).
                db_lease_seconds=settings.events.sender.lease_seconds,
            ),
            destinations,
            self.clock,
            settings.events.sender,
        )
        # Metrics of this data plane; /metrics serves the same object (runtime/server.py).
        self.metrics = metrics or DeliveryMetrics()
        self.gateway = SpoolGateway(
            self.spool,
            lease_seconds=engine_settings.lease_seconds,
            observer=CommitNotifier(self.metrics, self.events),
            accept_deadline=settings.accept_deadline,
        )
        self.config = ConfigView(store, self.clock)
        # Dynamic Delivery: the backoff state of every throttle, this node's or shared
        # through Redis (runtime/throttle_wiring.py). The outcome recorder feeds it, the
        # dispatcher reads its limits (delivery/throttles/throttle_backoffs); the Throttles API
        # shows it and ends backoff.
        self.backoffs = backoffs or ThrottleBackoffs()
        self.delivery_log_path = data_dir / "delivery.log"
        self.delivery_log = DeliveryLog(self.delivery_log_path if settings.delivery_log else None)
        self.activity = ActivityLog(settings.log_messages)
        self.journal = InflightJournal(data_dir / journal_name(worker))
        self.health = EgressHealth(
            threshold=settings.external_mta_failures, suspension=settings.external_mta_suspension
        )
        router = Router(
            self.config,
            MxResolver(settings.dns_servers, clock=self.clock),
            RouterSettings(
                hostname=settings.hostname,
                delivery_port=settings.delivery_port,
                recheck=settings.recheck,
                mx_allow_loopback=settings.mx_allow_loopback,
            ),
            health=self.health,
            clock=self.clock,
        )
        # What comes back (docs/feedback.md): the mailboxes of incoming email domains,
        # VERP for mail sent from a bounce mailbox, and (in `vmta serve` itself) the
        # processor of what the inbound listener accepted.
        self.mailbox_book = MailboxBook(store, verp_secret(store))
        self.feedback: FeedbackProcessor | None = None
        if worker == 0:
            self.feedback = FeedbackProcessor(
                store,
                self.mailbox_book,
                self.owner,
                subscriptions(destinations),
                predecessors=identity.predecessors,
                policy=settings.events.bad_addresses,
                hostname=settings.hostname,
            )
        self.inbound: Listener | None = None
        # Where this node listens (the SMTP listener at start, the API by runtime/server):
        # delivery never connects there (a mail loop; domain/paths/mail_loops.py).
        self.own_listeners = OwnListeners()
        self.engine = build_engine(
            spool=self.gateway,
            router=router,
            transport=transport or SmtpTransport(settings.transport, self.own_listeners),
            throttles=self.throttles,
            clock=self.clock,
            settings=engine_settings,
            delivery_log=self.delivery_log,
            journal=self.journal,
            health=self.health,
            hostname=settings.hostname,
            metrics=self.metrics,
            backoffs=self.backoffs,
            senders=VerpSigner(self.mailbox_book),
            activity=self.activity,
        )
        # A removed pause releases its held mail within seconds, not at the recheck.
        self.pause_release = PauseRelease(store, self.config, self.clock, self.engine.wake)
        self.inflow = InflowGate(
            count_queued=self.gateway.queued_count,
            data_dir=data_dir,
            clock=self.clock,
            settings=settings.inflow,
        )
        self.intake = Intake(
            self.gateway,
            self.engine,
            self.clock,
            hostname=settings.hostname,
            honour_x_virtual_mta=settings.honour_x_virtual_mta,
            max_lifetime=engine_settings.retry.max_lifetime,
            inflow=self.inflow,
            signer=MessageSigner(Keyring(store, self.clock), self.clock),
            max_hops=settings.max_hops,
            activity=self.activity,
            metrics=self.metrics,
        )
        self.outbox: OutboxConsumer | None = None
        if settings.rabbitmq_url:
            from vmta.delivery.ingress.amqp_outbox import OutboxConsumer  # aio-pika: only when used

            self.outbox = OutboxConsumer(
                settings.rabbitmq_url,
                settings.rabbitmq_outbox,
                self.intake,
                failure_queue=settings.events.rabbitmq_queues.get("failure", ""),
            )
        self.auth_gate = AuthGate(self.check_credentials)
        self.listener: Listener | None = None
        # Session caps and stress for the node, whatever VMTA_WORKERS is.
        self.session_counts: SharedSessionCounts | None = None
        if settings.workers > 1:
            self.session_counts = SharedSessionCounts(
                data_dir / SESSION_COUNTS, worker, settings.workers
            )

    def check_credentials(self, name: str, secret: str) -> bool:
        """May ``name`` and ``secret`` authenticate over SMTP? A ``submit`` credential may;
        an ``admin`` one only with ``VMTA_SMTP_AUTH_ADMIN`` (contract §4), so that the secret
        every sending application holds cannot read relay passwords over the API. Blocking:
        the listener calls it in a worker thread (smtp/auth_gate.py)."""
        with self.store.read() as conn:
            record = CredentialRepository(conn).by_name(name)
        if record is None or not secret_matches(secret, record.secret_sha256):
            return False
        return record.scope == "submit" or self.settings.smtp_auth_admin

    async def start(
        self, smtp_socket: socket.socket | None, inbound_socket: socket.socket | None = None
    ) -> None:
        self.gateway.start()
        self.backoffs.start()
        await self.inflow.start()
        await self.events.start()
        await self.engine.start()
        self.activity.start()
        self.pause_release.start()
        if smtp_socket is not None:
            host, port = smtp_socket.getsockname()[:2]
            self.own_listeners.add(host, port)
            listener = ListenerSettings(
                hostname=self.settings.hostname,
                max_message_size=self.settings.max_message_size,
                tls_context=tls_context(self.settings.tls_cert, self.settings.tls_key),
                relay_networks=list(self.settings.relay_networks),
                caps=self.settings.session_caps,
                session_counts=self.session_counts,
            )
            self.listener = await start_listener(
                smtp_socket, self.intake, listener, self.auth_gate, self.metrics
            )
        if self.outbox is not None:
            await self.outbox.start(first_attempt=0)  # never waits for the broker
        if self.feedback is not None:
            await self.feedback.start()
            if inbound_socket is not None:
                host, port = inbound_socket.getsockname()[:2]
                self.own_listeners.add(host, port)  # delivery never connects there either
                inbound = InboundSettings(
                    hostname=self.settings.hostname,
                    max_message_size=self.settings.max_message_size,
                    max_recipients=self.settings.inbound_max_recipients,
                    caps=self.settings.session_caps,
                )
                handler = InboundHandler(
                    self.store,
                    self.mailbox_book,
                    inbound,
                    intake=self.intake,
                    accepted=self.feedback.wake,
                )
                self.inbound = await start_inbound_listener(inbound_socket, handler, inbound)

    def stop_accepting(self) -> None:
        """Refuse new SMTP connections from now on (the first thing on SIGTERM)."""
        if self.listener is not None:
            self.listener.server.close()
        if self.inbound is not None:
            self.inbound.server.close()

    def force_stop(self) -> None:
        """Stop waiting for SMTP transactions in progress (a second stop signal)."""
        if self.listener is not None:
            self.listener.sessions.force()

    async def stop(self) -> None:
        """Stop consuming the outbox and accepting, let transactions in DATA end (within
        the grace period), say 421 to every SMTP session, then stop delivery and flush
        the spool."""
        if self.outbox is not None:
            await self.outbox.stop()
        if self.listener is not None:
            await self.listener.stop(self.settings.shutdown_grace)
        if self.inbound is not None:
            await self.inbound.stop(self.settings.shutdown_grace)
        if self.feedback is not None:
            await self.feedback.stop()
        if self.session_counts is not None:
            self.session_counts.close()
        await self.pause_release.stop()
        await self.engine.stop()
        await self.activity.stop()
        await self.inflow.stop()
        await self.gateway.stop()
        await self.events.stop()
        await self.backoffs.close()
        await self.throttles.close()
        self.journal.close()
        self.delivery_log.close()

    def api_hooks(self) -> DataPlaneHooks:
        """What the API of this process uses of this data plane (api/ports.py)."""
        return DataPlaneHooks(
            submit=functools.partial(self.intake.accept, via="HTTP"),
            intake=self.intake,
            wake_engine=self.engine.wake,
            config_changed=self.config.invalidate,
            engine_state=self.state,
            event_destinations=lambda: (self.events.describe(), self.events.recovered_in_flight),
            dependencies=self.dependencies,
            hostname=self.settings.hostname,
        )

    def dependencies(self) -> dict[str, Any]:
        """The links to the services vmta needs only for part of its work (RabbitMQ,
        Redis):
        each up, or down since when and why (``/api/health``; start-up never waits for
        them, docs/cluster.md)."""
        links: dict[str, Any] = {}
        for destination in self.events.destinations:
            link = getattr(destination, "link", None)
            if link is not None:
                links[f"events:{destination.name}"] = link.report()
        if self.outbox is not None:
            links["amqp_outbox"] = self.outbox.link.report()
        redis = getattr(self.throttles, "link", None)  # Redis throttles: limited paths wait
        if redis is not None:
            links["redis_throttles"] = redis.report()
        return links

    def state(self) -> dict[str, Any]:
        return {
            "running": not self.engine.stopping,
            "node": self.owner,
            "in_memory": self.engine.in_memory,
            "recovered_in_flight": self.engine.recovered_in_flight,
            "paths": self.engine.path_states(),
            "external_mtas": self.health.report(self.clock.now()),
            "commits": self.gateway.commit_stats,
            "body_reads": self.gateway.read_stats,
            "inflow": {
                "queued": self.inflow.queued,
                "free_disk": self.inflow.free_disk,
                "refusing": self.inflow.refusal(),
            },
            "events_recovered_in_flight": self.events.recovered_in_flight,
        }


def data_plane_for(
    store: Store,
    settings: Settings,
    *,
    worker: int = 0,
    metrics: DeliveryMetrics | None = None,
) -> DataPlane:
    """The data plane of `vmta serve` (``worker`` 0) or of one of its worker processes:
    these settings, the system clock, and the throttle and backoff stores they name."""
    return DataPlane(
        store,
        data_plane_settings(settings),
        settings.data_dir,
        throttles=throttle_backend(settings, SystemClock()),
        backoffs=throttle_backoffs(settings, SystemClock()),
        metrics=metrics,
        worker=worker,
    )
