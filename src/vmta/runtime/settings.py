"""Settings: defaults, then an optional TOML file, then ``VMTA_*`` environment variables,
then command-line flags; each later source wins.

Every setting is one field of ``Settings`` (its type and default) plus one row of
``OPTIONS`` (where it comes from and how its text is checked). The command line builds
its flags from ``OPTIONS`` too, so a new setting needs exactly those two lines.
"""

from __future__ import annotations

import os
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vmta.domain.retry_schedule import DEFAULT_BACKOFF, DEFAULT_MAX_LIFETIME
from vmta.runtime.setting_options import OPTIONS, Option
from vmta.runtime.setting_parsers import (
    Listen,
    SettingsError,
)

__all__ = ["OPTIONS", "Listen", "Option", "Settings", "SettingsError", "load_settings"]

# Listen, the value parsers and the OPTIONS table live in setting_parsers.py and
# setting_options.py; they are named here too, where callers have always found them.


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
    smtp_max_message_size: int = 50 * 1024 * 1024
    smtp_tls_cert: Path | None = None
    smtp_tls_key: Path | None = None
    smtp_relay_networks: tuple[str, ...] = ()
    honour_x_virtual_mta: bool = False
    retry_backoff: tuple[float, ...] = DEFAULT_BACKOFF
    max_queue_lifetime: float = DEFAULT_MAX_LIFETIME
    max_messages_per_connection: int = 100
    connection_idle_timeout: float = 5.0
    connect_timeout: float = 30.0
    allow_plaintext_auth: bool = False
    dns_servers: tuple[str, ...] = ()
    delivery_port: int = 25
    external_mta_failures: int = 3
    external_mta_suspension: float = 60.0
    finished_retention: float = 86_400.0
    # ---- the engine under load and adversity ----
    max_in_memory: int = 20_000
    max_queued: int = 2_000_000
    min_free_disk: int = 256 * 1024 * 1024
    path_failures_before_delay: int = 3
    path_failure_delay: float = 60.0
    max_connection_rate: float = 10.0
    # Processes that inject and deliver (runtime/workers.py); 1: this process alone.
    workers: int = 1
    # ---- a cluster (docs/architecture.md, "Cluster") ----
    # Redis for throttles shared by every node; None: throttles are per node. Kept out of
    # repr: a URL may carry a password.
    redis_url: str | None = field(default=None, repr=False)
    redis_namespace: str = "vmta"
    redis_lease: float = 30.0
    claim_lease: float = 300.0
    # MailerQ's AMQP outbox. The URL may carry a password: kept out of repr, never logged.
    rabbitmq_url: str | None = field(default=None, repr=False)
    rabbitmq_outbox: str = "outbox"
    # ---- hostile clients, secrets and TLS (docs/security.md) ----
    smtp_max_sessions: int = 1000
    smtp_max_sessions_per_client: int = 100
    smtp_stress_timeout: float = 10.0
    smtp_shutdown_grace: float = 30.0
    smtp_auth_admin: bool = False
    relay_tls: tuple[str, ...] = ()
    relay_ca_file: Path | None = None
    loopback_counts_as_remote: bool = False
    # ---- delivery events (docs/events.md); URLs may carry credentials: not in repr ----
    events_http_url: str | None = field(default=None, repr=False)
    events_http_batch: int = 100
    events_http_timeout: float = 10.0
    events_retry_max: float = 300.0
    # rabbitmq_url (above) also carries the results when it is set.
    rabbitmq_results: str = "results"
    rabbitmq_success: str = "success"
    rabbitmq_failure: str = "failure"
    rabbitmq_retry: str = "retry"
    # ---- the feedback loop: event forms and the bad-address threshold (docs/events.md) ----
    events_http_json: bool = True
    events_http_url_delivery_attempt: str | None = field(default=None, repr=False)
    events_http_url_bounce_all: str | None = field(default=None, repr=False)
    events_http_url_bounce_bad_address: str | None = field(default=None, repr=False)
    events_http_url_scomp: str | None = field(default=None, repr=False)
    bad_address_hard: int = 1
    bad_address_soft: int = 3
    bad_address_days: int = 7
    suppress_bad_addresses: bool = True
    # ---- what comes back: bounces and complaints (docs/feedback.md) ----
    inbound_listen: Listen | None = None  # None: no inbound listener
    rabbitmq_reports: str = "reports"
    # ---- mail loops (domain/mail_loops.py) ----
    max_hops: int = 100
    mx_allow_loopback: bool = False
    # ---- operators' first week (docs/operations.md) ----
    log_messages: str = "each"  # each | minute | off

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'vmta.db').resolve()}"


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
