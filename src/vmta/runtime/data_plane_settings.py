"""What a data plane is configured with: ``DataPlaneSettings``, built from vmta's settings
(``runtime/settings.py``) by ``data_plane_settings``, with the files they name (the relay
CA file, the SMTP TLS certificate) checked at start-up rather than at first use.

Each default is written once, in the settings dataclass of the part that uses it
(``EngineSettings``, ``RouterSettings``, ``SessionCaps``...), or here for what only the
data plane as a whole uses; ``Settings`` and the option table's help take theirs from
these (tests/unit/test_setting_defaults.py holds them to it)."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from vmta.delivery.engine.delivery_engine import EngineSettings
from vmta.delivery.engine.spool_gateway import ACCEPT_DEADLINE
from vmta.delivery.events.event_sender import SenderSettings
from vmta.delivery.events.event_setup import EventSettings
from vmta.delivery.ingress.inflow import InflowSettings
from vmta.delivery.routing.router import RouterSettings
from vmta.domain.attempts.retry_schedule import RetrySchedule
from vmta.domain.paths.mail_loops import DEFAULT_MAX_HOPS
from vmta.domain.paths.relay_policy import Network, parse_networks
from vmta.domain.paths.relay_tls import parse_relay_tls
from vmta.domain.reports.bad_address import BadAddressPolicy
from vmta.domain.reports.feedback_events import REPORTS_QUEUE
from vmta.runtime.setting_parsers import SettingsError
from vmta.smtp.session_registry import SessionCaps
from vmta.smtp.transport import TransportSettings

if TYPE_CHECKING:  # runtime/settings.py takes its defaults from here
    from vmta.runtime.settings import Settings


@dataclass(frozen=True)
class DataPlaneSettings:
    hostname: str = field(default_factory=socket.getfqdn)
    max_message_size: int = 50 * 1024 * 1024
    tls_cert: Path | None = None
    tls_key: Path | None = None
    relay_networks: tuple[Network, ...] = ()
    honour_x_virtual_mta: bool = False
    engine: EngineSettings = field(default_factory=EngineSettings)
    transport: TransportSettings = field(default_factory=TransportSettings)
    delivery_log: bool = True
    dns_servers: tuple[str, ...] = ()  # empty: the system's resolver configuration
    delivery_port: int = RouterSettings.delivery_port
    # Seconds before a paused or waiting recipient is looked at again.
    recheck: float = RouterSettings.recheck
    external_mta_failures: int = 3  # consecutive egress failures that suspend an external MTA
    external_mta_suspension: float = 60.0  # seconds
    inflow: InflowSettings = field(default_factory=InflowSettings)
    rabbitmq_url: str | None = field(default=None, repr=False)  # MailerQ's AMQP outbox
    rabbitmq_outbox: str = "outbox"
    session_caps: SessionCaps = field(default_factory=SessionCaps)
    shutdown_grace: float = 30.0  # seconds DATA in progress may take to finish on stop
    accept_deadline: float = ACCEPT_DEADLINE  # seconds an accept waits for its commit
    smtp_auth_admin: bool = False  # SMTP AUTH takes admin credentials too (contract §4)
    events: EventSettings = field(default_factory=EventSettings)
    inbound_max_recipients: int = 100  # the inbound listener's (docs/feedback.md)
    # Mail loops (domain/paths/mail_loops.py): Received fields allowed, loopback MX hosts used.
    max_hops: int = DEFAULT_MAX_HOPS
    mx_allow_loopback: bool = RouterSettings.mx_allow_loopback
    workers: int = 1  # VMTA_WORKERS: more than 1 shares the session counts of the node
    log_messages: str = "each"  # delivery/outcomes/activity_log.py


def check_ca_file(path: Path | None) -> str | None:
    """VMTA_RELAY_CA_FILE, checked at start-up rather than at the first relay connection."""
    if path is None:
        return None
    try:
        ssl.create_default_context(cafile=str(path))
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(f"cannot load VMTA_RELAY_CA_FILE {path}: {exc}") from None
    return str(path)


def data_plane_settings(settings: Settings) -> DataPlaneSettings:
    """The data plane's part of the settings."""
    return DataPlaneSettings(
        hostname=settings.hostname,
        max_message_size=settings.smtp_max_message_size,
        tls_cert=settings.smtp_tls_cert,
        tls_key=settings.smtp_tls_key,
        relay_networks=tuple(parse_networks(settings.smtp_relay_networks)),
        honour_x_virtual_mta=settings.honour_x_virtual_mta,
        engine=EngineSettings(
            retry=RetrySchedule(
                backoff=settings.retry_backoff, max_lifetime=settings.max_queue_lifetime
            ),
            max_messages_per_connection=settings.max_messages_per_connection,
            idle_timeout=settings.connection_idle_timeout,
            finished_retention=settings.finished_retention,
            max_in_memory=settings.max_in_memory,
            failures_before_delay=settings.path_failures_before_delay,
            failure_delay=settings.path_failure_delay,
            max_connection_rate=settings.max_connection_rate,
            lease_seconds=settings.claim_lease,
        ),
        inflow=InflowSettings(max_queued=settings.max_queued, min_free_disk=settings.min_free_disk),
        transport=TransportSettings(
            connect_timeout=settings.connect_timeout,
            allow_plaintext_auth=settings.allow_plaintext_auth,
            relay_tls=parse_relay_tls(settings.relay_tls),
            ca_file=check_ca_file(settings.relay_ca_file),
            loopback_is_remote=settings.loopback_counts_as_remote,
        ),
        dns_servers=settings.dns_servers,
        delivery_port=settings.delivery_port,
        external_mta_failures=settings.external_mta_failures,
        external_mta_suspension=settings.external_mta_suspension,
        rabbitmq_url=settings.rabbitmq_url,
        rabbitmq_outbox=settings.rabbitmq_outbox,
        session_caps=SessionCaps(
            max_sessions=settings.smtp_max_sessions,
            max_per_client=settings.smtp_max_sessions_per_client,
            stress_timeout=settings.smtp_stress_timeout,
        ),
        shutdown_grace=settings.smtp_shutdown_grace,
        smtp_auth_admin=settings.smtp_auth_admin,
        log_messages=settings.log_messages,
        events=EventSettings(
            http_url=settings.events_http_url,
            http_batch=settings.events_http_batch,
            http_timeout=settings.events_http_timeout,
            http_type_urls={
                "delivery_attempt": settings.events_http_url_delivery_attempt or "",
                "bounce_all": settings.events_http_url_bounce_all or "",
                "bounce_bad_address": settings.events_http_url_bounce_bad_address or "",
                "scomp": settings.events_http_url_scomp or "",
            },
            http_json=settings.events_http_json,
            bad_addresses=BadAddressPolicy(
                hard=settings.bad_address_hard,
                soft=settings.bad_address_soft,
                days=float(settings.bad_address_days),
                suppress=settings.suppress_bad_addresses,
            ),
            rabbitmq_url=settings.rabbitmq_url,
            rabbitmq_queues={
                "results": settings.rabbitmq_results,
                "success": settings.rabbitmq_success,
                "failure": settings.rabbitmq_failure,
                "retry": settings.rabbitmq_retry,
                REPORTS_QUEUE: settings.rabbitmq_reports,
            },
            sender=SenderSettings(retry_max=settings.events_retry_max),
        ),
        max_hops=settings.max_hops,
        mx_allow_loopback=settings.mx_allow_loopback,
        workers=settings.workers,
    )


def tls_context(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    if cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(cert), str(key) if key else None)
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(f"cannot load the SMTP TLS certificate {cert}: {exc}") from None
    return context
