"""Building the data plane (spool, engine, SMTP listener) and starting and stopping it in
order: the spool gateway first and last, the listener only once the engine is running."""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmta.delivery.clock import Clock, SystemClock
from vmta.delivery.config_view import ConfigView
from vmta.delivery.delivery_log import DeliveryLog
from vmta.delivery.egress_health import EgressHealth
from vmta.delivery.engine import DeliveryEngine, EngineSettings
from vmta.delivery.inflight_journal import InflightJournal
from vmta.delivery.intake import Intake
from vmta.delivery.mx_resolver import MxResolver
from vmta.delivery.router import Router, RouterSettings
from vmta.delivery.spool_gateway import SpoolGateway
from vmta.delivery.throttle_backoffs import ThrottleBackoffs
from vmta.delivery.transport import Transport
from vmta.domain.credential import secret_matches
from vmta.domain.relay_policy import Network, parse_networks
from vmta.domain.retry_schedule import RetrySchedule
from vmta.runtime.settings import Settings, SettingsError
from vmta.smtp.listener import ListenerSettings, start_listener
from vmta.smtp.transport import SmtpTransport, TransportSettings
from vmta.store.credentials import CredentialRepository
from vmta.store.spool import SqlSpool
from vmta.store.store import Store

log = logging.getLogger(__name__)

NODE_ID_FILE = "node-id"


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
    delivery_port: int = 25
    recheck: float = 60.0  # seconds before a paused or waiting recipient is looked at again
    external_mta_failures: int = 3  # consecutive egress failures that suspend an external MTA
    external_mta_suspension: float = 60.0  # seconds


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
        ),
        transport=TransportSettings(
            connect_timeout=settings.connect_timeout,
            allow_plaintext_auth=settings.allow_plaintext_auth,
        ),
        dns_servers=settings.dns_servers,
        delivery_port=settings.delivery_port,
        external_mta_failures=settings.external_mta_failures,
        external_mta_suspension=settings.external_mta_suspension,
    )


def node_id(data_dir: Path) -> str:
    """This node's name in leases: stable across restarts of the same data directory, so
    that a restarted node recognises the work it had claimed."""
    path = data_dir / NODE_ID_FILE
    if path.exists():
        value = path.read_text(encoding="ascii").strip()
        if value:
            return value
    value = f"{socket.gethostname()[:40]}-{secrets.token_hex(4)}"
    path.write_text(value + "\n", encoding="ascii")
    return value


def tls_context(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    if cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(cert), str(key) if key else None)
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(f"cannot load the SMTP TLS certificate {cert}: {exc}") from None
    return context


class DataPlane:
    def __init__(
        self,
        store: Store,
        settings: DataPlaneSettings,
        data_dir: Path,
        *,
        clock: Clock | None = None,
        transport: Transport | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock or SystemClock()
        self.owner = node_id(data_dir)
        self.spool = SqlSpool(store, self.owner)
        engine_settings = settings.engine
        self.gateway = SpoolGateway(self.spool, lease_seconds=engine_settings.lease_seconds)
        self.config = ConfigView(store, self.clock)
        # Dynamic Delivery: the backoff state of every throttle of this node. The engine
        # is to feed it and read it (see vmta.delivery.throttle_backoffs); the Throttles
        # API shows it and ends backoff.
        self.backoffs = ThrottleBackoffs()
        self.delivery_log_path = data_dir / "delivery.log"
        self.delivery_log = DeliveryLog(self.delivery_log_path if settings.delivery_log else None)
        self.journal = InflightJournal(data_dir / "inflight.journal")
        self.health = EgressHealth(
            threshold=settings.external_mta_failures, suspension=settings.external_mta_suspension
        )
        self.engine = DeliveryEngine(
            spool=self.gateway,
            router=Router(
                self.config,
                MxResolver(settings.dns_servers, clock=self.clock),
                RouterSettings(
                    hostname=settings.hostname,
                    delivery_port=settings.delivery_port,
                    recheck=settings.recheck,
                ),
                health=self.health,
                clock=self.clock,
            ),
            transport=transport or SmtpTransport(settings.transport),
            clock=self.clock,
            settings=engine_settings,
            delivery_log=self.delivery_log,
            journal=self.journal,
            health=self.health,
        )
        self.intake = Intake(
            self.gateway,
            self.engine,
            self.clock,
            hostname=settings.hostname,
            honour_x_virtual_mta=settings.honour_x_virtual_mta,
            max_lifetime=engine_settings.retry.max_lifetime,
        )
        self.engine.hostname = settings.hostname
        self.engine.bounce = self.intake.accept_bounce
        self._server: asyncio.AbstractServer | None = None

    def check_credentials(self, name: str, secret: str) -> bool:
        with self.store.read() as conn:
            record = CredentialRepository(conn).by_name(name)
        return record is not None and secret_matches(secret, record.secret_sha256)

    async def start(self, smtp_socket: socket.socket | None) -> None:
        self.gateway.start()
        await self.engine.start()
        if smtp_socket is not None:
            listener = ListenerSettings(
                hostname=self.settings.hostname,
                max_message_size=self.settings.max_message_size,
                tls_context=tls_context(self.settings.tls_cert, self.settings.tls_key),
                relay_networks=list(self.settings.relay_networks),
            )
            self._server = await start_listener(
                smtp_socket, self.intake, listener, self.check_credentials
            )

    async def stop(self) -> None:
        """Stop accepting, let transactions in flight end, flush the spool."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await self.engine.stop()
        await self.gateway.stop()
        self.journal.close()
        self.delivery_log.close()

    def state(self) -> dict[str, Any]:
        return {
            "running": not self.engine.stopping,
            "node": self.owner,
            "in_memory": self.engine.in_memory,
            "recovered_in_flight": self.engine.recovered_in_flight,
            "paths": self.engine.path_states(),
            "external_mtas": self.health.report(self.clock.now()),
            "commits": self.gateway.commit_stats,
        }
