"""Settings: defaults, then an optional TOML file, then ``VMTA_*`` environment variables,
then command-line flags; each later source wins.

Every setting is one field of ``Settings`` (its type and default) plus one row of
``OPTIONS`` (where it comes from, how its text is checked, what it means). The command
line builds its flags from ``OPTIONS`` too, so a new setting needs exactly those two lines
(and README's table, made by ``python -m vmta.runtime.settings_table --write README.md``).
A default that a part of the data plane uses is not written here: it is taken from that
part's settings dataclass, and the help shows it from here.
"""

from __future__ import annotations

import os
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from vmta.delivery.engine.delivery_engine import EngineSettings
from vmta.delivery.events.event_sender import SenderSettings
from vmta.delivery.events.event_setup import EventSettings
from vmta.delivery.ingress.inflow import InflowSettings
from vmta.domain.attempts.retry_schedule import RetrySchedule
from vmta.domain.reports.bad_address import BadAddressPolicy
from vmta.domain.reports.feedback_events import REPORTS_QUEUE
from vmta.domain.reports.mailerq_result import DEFAULT_QUEUES
from vmta.runtime.data_plane_settings import DataPlaneSettings
from vmta.runtime.setting_options import OPTIONS, Option
from vmta.runtime.setting_parsers import (
    Listen,
    SettingsError,
    _seconds,
)
from vmta.smtp.session_registry import SessionCaps
from vmta.smtp.transport import TransportSettings

__all__ = [
    "OPTIONS",
    "Listen",
    "Option",
    "Settings",
    "SettingsError",
    "default_of",
    "help_text",
    "load_settings",
]

# Listen, the value parsers and the OPTIONS table live in setting_parsers.py and
# setting_options.py; they are named here too, where callers have always found them.


# The defaults of what the data plane's parts use are each taken from that part's
# settings dataclass: written once, there (tests/unit/test_setting_defaults.py).
@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("vmta-data")
    api_listen: Listen = field(default_factory=lambda: Listen("127.0.0.1", 8080))
    # Default: SQLite in data_dir. Kept out of repr: a URL may carry a password.
    database_url: str | None = field(default=None, repr=False)
    # The secret of the `admin` credential, if given. Never in repr, never logged.
    api_token: str | None = field(default=None, repr=False)
    log_level: str = "INFO"
    # ---- the data plane ----
    smtp_listen: Listen = field(default_factory=lambda: Listen("127.0.0.1", 2525))
    hostname: str = field(default_factory=socket.getfqdn)
    smtp_max_message_size: int = DataPlaneSettings.max_message_size
    smtp_tls_cert: Path | None = None
    smtp_tls_key: Path | None = None
    smtp_relay_networks: tuple[str, ...] = ()
    honour_x_virtual_mta: bool = DataPlaneSettings.honour_x_virtual_mta
    retry_backoff: tuple[float, ...] = tuple(RetrySchedule.backoff)
    max_queue_lifetime: float = RetrySchedule.max_lifetime
    max_messages_per_connection: int = EngineSettings.max_messages_per_connection
    connection_idle_timeout: float = EngineSettings.idle_timeout
    connect_timeout: float = TransportSettings.connect_timeout
    allow_plaintext_auth: bool = TransportSettings.allow_plaintext_auth
    dns_servers: tuple[str, ...] = DataPlaneSettings.dns_servers
    delivery_port: int = DataPlaneSettings.delivery_port
    external_mta_failures: int = DataPlaneSettings.external_mta_failures
    external_mta_suspension: float = DataPlaneSettings.external_mta_suspension
    finished_retention: float = EngineSettings.finished_retention
    # ---- the engine under load and adversity ----
    max_in_memory: int = EngineSettings.max_in_memory
    max_queued: int = InflowSettings.max_queued
    min_free_disk: int = InflowSettings.min_free_disk
    path_failures_before_delay: int = EngineSettings.failures_before_delay
    path_failure_delay: float = EngineSettings.failure_delay
    max_connection_rate: float = EngineSettings.max_connection_rate
    # Processes that inject and deliver (runtime/worker_pool.py); 1: this process alone.
    workers: int = DataPlaneSettings.workers
    # ---- a cluster (docs/architecture.md, "Cluster") ----
    # Redis for throttles shared by every node; None: throttles are per node. Kept out of
    # repr: a URL may carry a password.
    redis_url: str | None = field(default=None, repr=False)
    redis_namespace: str = "vmta"
    redis_lease: float = 30.0
    claim_lease: float = EngineSettings.lease_seconds
    # MailerQ's AMQP outbox. The URL may carry a password: kept out of repr, never logged.
    rabbitmq_url: str | None = field(default=None, repr=False)
    rabbitmq_outbox: str = DataPlaneSettings.rabbitmq_outbox
    # ---- hostile clients, secrets and TLS (docs/security.md) ----
    smtp_max_sessions: int = SessionCaps.max_sessions
    smtp_max_sessions_per_client: int = SessionCaps.max_per_client
    smtp_stress_timeout: float = SessionCaps.stress_timeout
    smtp_shutdown_grace: float = DataPlaneSettings.shutdown_grace
    smtp_auth_admin: bool = DataPlaneSettings.smtp_auth_admin
    relay_tls: tuple[str, ...] = ()  # none: RelayTlsPolicies' default for every relay
    relay_ca_file: Path | None = None
    loopback_counts_as_remote: bool = TransportSettings.loopback_is_remote
    # ---- delivery events (docs/events.md); URLs may carry credentials: not in repr ----
    events_http_url: str | None = field(default=None, repr=False)
    events_http_batch: int = EventSettings.http_batch
    events_http_timeout: float = EventSettings.http_timeout
    events_retry_max: float = SenderSettings.retry_max
    # rabbitmq_url (above) also carries the results when it is set.
    rabbitmq_results: str = DEFAULT_QUEUES["results"]
    rabbitmq_success: str = DEFAULT_QUEUES["success"]
    rabbitmq_failure: str = DEFAULT_QUEUES["failure"]
    rabbitmq_retry: str = DEFAULT_QUEUES["retry"]
    # ---- the feedback loop: event forms and the bad-address threshold (docs/events.md) ----
    events_http_json: bool = EventSettings.http_json
    events_http_url_delivery_attempt: str | None = field(default=None, repr=False)
    events_http_url_bounce_all: str | None = field(default=None, repr=False)
    events_http_url_bounce_bad_address: str | None = field(default=None, repr=False)
    events_http_url_scomp: str | None = field(default=None, repr=False)
    bad_address_hard: int = BadAddressPolicy.hard
    bad_address_soft: int = BadAddressPolicy.soft
    bad_address_days: int = int(BadAddressPolicy.days)
    suppress_bad_addresses: bool = BadAddressPolicy.suppress
    # ---- what comes back: bounces and complaints (docs/feedback.md) ----
    inbound_listen: Listen | None = None  # None: no inbound listener
    rabbitmq_reports: str = DEFAULT_QUEUES[REPORTS_QUEUE]
    # ---- mail loops (domain/paths/mail_loops.py) ----
    max_hops: int = DataPlaneSettings.max_hops
    mx_allow_loopback: bool = DataPlaneSettings.mx_allow_loopback
    # ---- operators' first week (docs/operations.md) ----
    log_messages: str = DataPlaneSettings.log_messages  # each | minute | off

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'vmta.db').resolve()}"


def default_of(name: str) -> Any:
    """The default of the ``Settings`` field ``name``."""
    spec = next(f for f in fields(Settings) if f.name == name)
    if spec.default_factory is not MISSING:
        return spec.default_factory()
    return spec.default


DAY = 86_400
MIB = 1024 * 1024


def shown(value: object, option: Option) -> str:
    """A default as a user would write it in the environment variable (plus, for a
    whole number of days or of MiB, that number)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(shown(item, option) for item in value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value)
    if option.parse is _seconds and isinstance(value, int) and value >= DAY and not value % DAY:
        days = value // DAY
        text += f": {days} day" + ("s" if days > 1 else "")
    if option.in_bytes and isinstance(value, int) and value >= MIB and not value % MIB:
        text += f": {value // MIB} MiB"
    return text


def help_text(option: Option) -> str:
    """The option's help with its default (``{default}``) filled in."""
    if "{default}" not in option.help:
        return option.help
    return option.help.replace("{default}", shown(default_of(option.name), option))


def _option_named(name: str) -> Option:
    for option in OPTIONS:
        if option.name == name:
            return option
    raise SettingsError(f"unknown setting {name}")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError(f"configuration file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"cannot read configuration file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"configuration file {path} is not valid TOML: {exc}") from None


def load_settings(
    *,
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Settings from every source. ``overrides`` are command-line values by field name
    (None: not given). An empty environment variable counts as unset."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}

    config_path = config_file
    if config_path is None and env.get("VMTA_CONFIG"):
        config_path = Path(env["VMTA_CONFIG"])
    if config_path is not None:
        data = _read_toml(config_path)
        known = {option.name for option in OPTIONS}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SettingsError(
                f"{config_path}: unknown setting(s) {', '.join(unknown)};"
                f" known: {', '.join(sorted(known))}"
            )
        for key, raw in data.items():
            values[key] = _option_named(key).parse(raw, f"{config_path}: {key}")

    for option in OPTIONS:
        raw = env.get(option.env)
        if raw or (raw is not None and option.allow_empty):
            values[option.name] = option.parse(raw, option.env)

    for name, raw in (overrides or {}).items():
        option = _option_named(name)
        if raw is not None:
            values[name] = option.parse(raw, option.flag or name)

    settings = Settings()
    return replace(settings, **values) if values else settings
