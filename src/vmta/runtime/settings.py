"""Settings: defaults, then an optional TOML file, then ``VMTA_*`` environment variables,
then command-line flags; each later source wins.

Every setting is one field of ``Settings`` (its type and default) plus one row of
``OPTIONS`` (where it comes from and how its text is checked). The command line builds
its flags from ``OPTIONS`` too, so a new setting needs exactly those two lines.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vmta.domain.retry_schedule import DEFAULT_BACKOFF, DEFAULT_MAX_LIFETIME
from vmta.runtime.setting_parsers import (
    _HOSTNAME,
    Parser,
    SettingsError,
    _boolean,
    _dns_servers,
    _hostname,
    _integer,
    _log_level,
    _networks,
    _path,
    _relay_tls,
    _seconds,
    _seconds_list,
    _secret,
    _text,
)

__all__ = ["OPTIONS", "Listen", "Option", "Settings", "SettingsError", "load_settings"]


@dataclass(frozen=True)
class Listen:
    """A TCP address to listen on. Port 0 asks the system for a free port; the log then
    names the one it got."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str, origin: str) -> Listen:
        problem = SettingsError(
            f"{origin} must be HOST:PORT with a port from 0 to 65535 (for example"
            f" 127.0.0.1:8080, or [::1]:8080 for IPv6), not {text!r}"
        )
        host, sep, port = text.rpartition(":")
        if not sep or not port.isascii() or not port.isdigit() or int(port) > 65535:
            raise problem
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise problem from None
        elif not _HOSTNAME.fullmatch(host):
            raise problem
        return cls(host, int(port))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _listen(value: object, origin: str) -> Listen:
    return Listen.parse(_text(value, origin), origin)


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
    events_http_batch: int = 1
    events_http_timeout: float = 10.0
    events_retry_max: float = 300.0
    # rabbitmq_url (above) also carries the results when it is set.
    rabbitmq_results: str = "results"
    rabbitmq_success: str = "success"
    rabbitmq_failure: str = "failure"
    rabbitmq_retry: str = "retry"

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'vmta.db').resolve()}"


# ---- parsers of the settings added with the engine, the cluster and MailerQ ----


def _rate(value: object, origin: str) -> float:
    """A rate per second: a non-negative number (0 means no cap)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise SettingsError(f"{origin} must be a number of connections a second")
    try:
        rate = float(value)
    except ValueError:
        raise SettingsError(f"{origin} must be a number of connections a second") from None
    if not 0 <= rate <= 1_000_000:
        raise SettingsError(f"{origin} must be from 0 to 1000000, not {value!r}")
    return rate


def _redis_url(value: object, origin: str) -> str:
    text = _text(value, origin).strip()
    if not text.startswith(("redis://", "rediss://", "unix://")):
        # The value is not repeated: it may carry a password.
        raise SettingsError(
            f"{origin} must be a redis://, rediss:// or unix:// URL, e.g."
            " redis://redis.example.com:6379/0"
        )
    return text


def _namespace(value: object, origin: str) -> str:
    text = _text(value, origin).strip()
    if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", text):
        raise SettingsError(
            f"{origin} must be 1 to 64 letters, digits or _ . : - (a Redis key prefix),"
            f" not {text!r}"
        )
    return text


def _queue_name(value: object, origin: str) -> str:
    text = _text(value, origin).strip()
    # AMQP 0-9-1 queue names: at most 255 bytes; names starting with amq. are reserved.
    if not text or len(text.encode()) > 255 or text.startswith("amq."):
        raise SettingsError(f"{origin} must be a queue name (1-255 bytes, not amq.*)")
    return text


def _http_url(value: object, origin: str) -> str:
    # Messages here never repeat the value: it may carry credentials.
    text = _text(value, origin).strip()
    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() not in ("http", "https") or not rest or " " in text:
        raise SettingsError(f"{origin} must be an http:// or https:// URL")
    return text


def _amqp_url(value: object, origin: str) -> str:
    text = _text(value, origin).strip()
    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() not in ("amqp", "amqps") or not rest or " " in text:
        raise SettingsError(
            f"{origin} must be an amqp:// or amqps:// URL, e.g. amqp://user:password@host:5672/"
        )
    return text


def _result_queue(value: object, origin: str) -> str:
    """A RabbitMQ queue name; empty turns that result queue off."""
    if not isinstance(value, str):
        raise SettingsError(f"{origin} must be a string, not {type(value).__name__}")
    name = value.strip()
    # AMQP 0-9-1 short strings: at most 255 bytes.
    if len(name.encode("utf-8")) > 255 or any(ord(ch) < 32 for ch in name):
        raise SettingsError(f"{origin} must be a queue name of at most 255 bytes, or empty")
    return name


@dataclass(frozen=True)
class Option:
    """Where one setting comes from. The TOML key is the field name."""

    name: str  # field of Settings
    env: str  # environment variable
    flag: str | None  # command-line flag; None for secrets (a command line is public)
    parse: Parser
    help: str
    metavar: str = "VALUE"
    serve_only: bool = False  # the flag exists on `vmta serve` only
    allow_empty: bool = False  # an empty environment variable is a value, not unset


OPTIONS: tuple[Option, ...] = (
    Option(
        "data_dir", "VMTA_DATA_DIR", "--data-dir", _path,
        "data directory: SQLite store and admin-token (default ./vmta-data)", "DIR",
    ),
    Option(
        "database_url", "VMTA_DATABASE_URL", "--database-url", _text,
        "database URL, e.g. postgresql://user:password@host:5432/db"
        " (default: SQLite in the data directory)", "URL",
    ),
    Option(
        "log_level", "VMTA_LOG_LEVEL", "--log-level", _log_level,
        "DEBUG, INFO, WARNING or ERROR (default INFO)", "LEVEL",
    ),
    Option(
        "api_listen", "VMTA_API_LISTEN", "--listen", _listen,
        "API address HOST:PORT (default 127.0.0.1:8080; port 0 picks a free port)",
        "HOST:PORT", serve_only=True,
    ),
    Option(
        "api_token", "VMTA_API_TOKEN", None, _secret,
        "secret of the `admin` API credential, set at start-up",
    ),
    Option(
        "smtp_listen", "VMTA_SMTP_LISTEN", "--smtp-listen", _listen,
        "SMTP injection address HOST:PORT (default 127.0.0.1:2525)", "HOST:PORT",
        serve_only=True,
    ),
    Option(
        "hostname", "VMTA_HOSTNAME", "--hostname", _hostname,
        "this MTA's host name: SMTP greeting, Received headers, bounces"
        " (default: the host's FQDN)", "NAME", serve_only=True,
    ),
    Option(
        "smtp_max_message_size", "VMTA_SMTP_MAX_MESSAGE_SIZE", None, _integer(1024, 2**31),
        "largest message accepted, in bytes (SIZE; default 52428800)",
    ),
    Option(
        "smtp_tls_cert", "VMTA_SMTP_TLS_CERT", None, _path,
        "PEM certificate (chain) for STARTTLS on the injection listener",
    ),
    Option(
        "smtp_tls_key", "VMTA_SMTP_TLS_KEY", None, _path,
        "PEM private key for that certificate",
    ),
    Option(
        "smtp_relay_networks", "VMTA_SMTP_RELAY_NETWORKS", None, _networks,
        "networks allowed to relay without AUTH besides loopback, e.g. 10.0.0.0/8,192.0.2.0/24",
    ),
    Option(
        "honour_x_virtual_mta", "VMTA_HONOUR_X_VIRTUAL_MTA", None, _boolean,
        "also select the VirtualMTA by a PowerMTA-style X-Virtual-MTA header (it wins over"
        " X-GreenArrow-MtaID; default false)",
    ),
    Option(
        "retry_backoff", "VMTA_RETRY_BACKOFF", None, _seconds_list,
        "seconds to wait after the 1st, 2nd, ... failed attempt; the last repeats"
        " (default 60,300,900,1800,3600,7200,14400)",
    ),
    Option(
        "max_queue_lifetime", "VMTA_MAX_QUEUE_LIFETIME", None, _seconds,
        "seconds a message may stay queued before it fails (default 172800: 2 days)",
    ),
    Option(
        "max_messages_per_connection", "VMTA_MAX_MESSAGES_PER_CONNECTION", None,
        _integer(1, 100_000), "messages sent over one connection before it is closed (default 100)",
    ),
    Option(
        "connection_idle_timeout", "VMTA_CONNECTION_IDLE_TIMEOUT", None, _seconds,
        "seconds an outbound connection may stay idle before QUIT (default 5)",
    ),
    Option(
        "connect_timeout", "VMTA_CONNECT_TIMEOUT", None, _seconds,
        "seconds allowed to connect (and open a proxy tunnel) (default 30)",
    ),
    Option(
        "dns_servers", "VMTA_DNS_SERVERS", None, _dns_servers,
        "DNS servers for MX look-ups, comma-separated, each IP[:port] ([IPv6]:port)"
        " (default: the system's /etc/resolv.conf)",
    ),
    Option(
        "delivery_port", "VMTA_DELIVERY_PORT", None, _integer(1, 65535),
        "port of the MX hosts vmta delivers to (default 25; another value is for tests)",
    ),
    Option(
        "external_mta_failures", "VMTA_EXTERNAL_MTA_FAILURES", None, _integer(1, 1000),
        "consecutive proxy/connect failures after which an external MTA is suspended (default 3)",
    ),
    Option(
        "external_mta_suspension", "VMTA_EXTERNAL_MTA_SUSPENSION", None, _seconds,
        "seconds an external MTA stays suspended; its mail waits meanwhile (default 60)",
    ),
    Option(
        "finished_retention", "VMTA_FINISHED_RETENTION", None, _seconds,
        "seconds a finished message (every recipient delivered or failed) is kept for"
        " inspection before it is deleted (default 86400: 1 day)",
    ),
    Option(
        "max_in_memory", "VMTA_MAX_IN_MEMORY", None, _integer(100, 10_000_000),
        "recipients the engine holds in memory at once; the rest wait in the spool"
        " (default 20000; message bodies are never held)",
    ),
    Option(
        "max_queued", "VMTA_MAX_QUEUED", None, _integer(0, 2**62),
        "recipients waiting in the spool above which SMTP injection answers 451 4.3.2"
        " (default 2000000; 0: no bound)",
    ),
    Option(
        "min_free_disk", "VMTA_MIN_FREE_DISK", None, _integer(0, 2**62),
        "bytes that must stay free under the data directory, else injection answers"
        " 452 4.3.1 (default 268435456: 256 MiB; 0: not checked)",
    ),
    Option(
        "path_failures_before_delay", "VMTA_PATH_FAILURES_BEFORE_DELAY", None,
        _integer(1, 10_000),
        "consecutive connection failures of an egress path after which everything waiting"
        " on it is deferred and the path is only probed again later (default 3)",
    ),
    Option(
        "path_failure_delay", "VMTA_PATH_FAILURE_DELAY", None, _seconds,
        "seconds before a failing egress path is probed again with one connection"
        " (default 60)",
    ),
    Option(
        "max_connection_rate", "VMTA_MAX_CONNECTION_RATE", None, _rate,
        "new connections a second per egress path at most (default 10; 0: no cap)",
    ),
    Option(
        "rabbitmq_url", "VMTA_RABBITMQ_URL", None, _amqp_url,
        "RabbitMQ to consume MailerQ message JSON from, amqp://user:password@host:5672/vhost"
        " (default: none, no outbox)",
    ),
    Option(
        "rabbitmq_outbox", "VMTA_RABBITMQ_OUTBOX", None, _queue_name,
        "the queue MailerQ messages are consumed from (default outbox)",
    ),
    Option(
        "allow_plaintext_auth", "VMTA_ALLOW_PLAINTEXT_AUTH", None, _boolean,
        "allow sending relay passwords without TLS to non-loopback servers (default false)",
    ),
    Option(
        "redis_url", "VMTA_REDIS_URL", None, _redis_url,
        "Redis for throttles shared by every node, e.g. redis://host:6379/0"
        " (default: none, each node throttles on its own)",
    ),
    Option(
        "redis_namespace", "VMTA_REDIS_NAMESPACE", None, _namespace,
        "prefix of vmta's keys in Redis; one per cluster sharing a Redis (default vmta)",
    ),
    Option(
        "redis_lease", "VMTA_REDIS_LEASE", None, _seconds,
        "seconds after which the connection slots of a node that stopped renewing them"
        " come back to the others (default 30)",
    ),
    Option(
        "claim_lease", "VMTA_CLAIM_LEASE", None, _seconds,
        "seconds a node's claim on queued work lasts unrenewed: the work of a node that"
        " died goes to the others this long after its last renewal (default 300)",
    ),
    Option(
        "smtp_max_sessions", "VMTA_SMTP_MAX_SESSIONS", None, _integer(1, 1_000_000),
        "SMTP injection sessions open at once; more get 421 4.7.0 at connect (default 1000)",
    ),
    Option(
        "smtp_max_sessions_per_client", "VMTA_SMTP_MAX_SESSIONS_PER_CLIENT", None,
        _integer(1, 1_000_000),
        "SMTP injection sessions open at once from one client address (default 100)",
    ),
    Option(
        "smtp_stress_timeout", "VMTA_SMTP_STRESS_TIMEOUT", None, _seconds,
        "idle timeout of SMTP injection sessions once they reach 80% of"
        " VMTA_SMTP_MAX_SESSIONS, instead of 300 s (default 10)",
    ),
    Option(
        "smtp_shutdown_grace", "VMTA_SMTP_SHUTDOWN_GRACE", None, _seconds,
        "seconds a stopping vmta lets SMTP transactions in DATA finish before it says 421"
        " (default 30)",
    ),
    Option(
        "smtp_auth_admin", "VMTA_SMTP_AUTH_ADMIN", None, _boolean,
        "SMTP AUTH also accepts admin credentials, not only submit ones (default false)",
    ),
    Option(
        "relay_tls", "VMTA_RELAY_TLS", None, _relay_tls,
        "TLS policy towards relay servers: opportunistic, required or verified, for all"
        " (a bare value) or per relay server (NAME=POLICY), comma-separated"
        " (default opportunistic; credentials always need a verified certificate)",
    ),
    Option(
        "relay_ca_file", "VMTA_RELAY_CA_FILE", None, _path,
        "PEM file of the CAs that relay certificates are verified against, instead of"
        " the system's store",
    ),
    Option(
        "loopback_counts_as_remote", "VMTA_LOOPBACK_COUNTS_AS_REMOTE", None, _boolean,
        "FOR TESTS ONLY: treat loopback relay peers as remote ones for the TLS and"
        " credential rules (default false)",
    ),
    Option(
        "events_http_url", "VMTA_EVENTS_HTTP_URL", None, _http_url,
        "POST every delivery event here, GreenArrow-style JSON (default: no HTTP events)",
    ),
    Option(
        "events_http_batch", "VMTA_EVENTS_HTTP_BATCH", None, _integer(1, 1000),
        "events per POST: 1 posts one JSON object, more a JSON array of up to that many"
        " (default 1)",
    ),
    Option(
        "events_http_timeout", "VMTA_EVENTS_HTTP_TIMEOUT", None, _seconds,
        "seconds an event POST may take before it counts as failed (default 10)",
    ),
    Option(
        "events_retry_max", "VMTA_EVENTS_RETRY_MAX", None, _seconds,
        "longest wait, in seconds, between two tries of a failing event destination;"
        " waits start at 1 s and double (default 300)",
    ),
    Option(
        "rabbitmq_results", "VMTA_RABBITMQ_RESULTS", None, _result_queue,
        "queue for every final result, success or failure; empty: none (default results)",
        allow_empty=True,
    ),
    Option(
        "rabbitmq_success", "VMTA_RABBITMQ_SUCCESS", None, _result_queue,
        "queue for successful deliveries; empty: none (default success)", allow_empty=True,
    ),
    Option(
        "rabbitmq_failure", "VMTA_RABBITMQ_FAILURE", None, _result_queue,
        "queue for failed deliveries; empty: none (default failure)", allow_empty=True,
    ),
    Option(
        "rabbitmq_retry", "VMTA_RABBITMQ_RETRY", None, _result_queue,
        "queue for deferred attempts that will be retried; empty: none (default retry)",
        allow_empty=True,
    ),
)  # fmt: skip


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
