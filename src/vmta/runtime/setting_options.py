"""Where each setting comes from: one ``Option`` per field of ``Settings`` (its
environment variable, its flag, how its text is checked, what it means). The command line
builds its flags from ``OPTIONS`` too, and README's configuration table is made from it
(``vmta.runtime.settings_table``).

A help text never writes a default value: ``{default}`` in it stands for the default of
the ``Settings`` field, which comes from the settings dataclass of the part that uses it
(``runtime/settings.py``). A setting whose default is "nothing" (no URL, no file) says
what that means in words instead."""

from __future__ import annotations

from dataclasses import dataclass

from vmta.delivery.events.event_sender import SenderSettings
from vmta.domain.paths.mail_loops import TOO_MANY_HOPS_REPLY
from vmta.domain.paths.relay_tls import RelayTlsPolicies
from vmta.runtime.setting_parsers import (
    MIN_TOKEN_LENGTH,
    Parser,
    _amqp_url,
    _boolean,
    _dns_servers,
    _hostname,
    _http_url,
    _integer,
    _listen,
    _log_level,
    _message_log,
    _namespace,
    _networks,
    _path,
    _queue_name,
    _rate,
    _redis_url,
    _relay_tls,
    _result_queue,
    _seconds,
    _seconds_list,
    _secret,
    _text,
)
from vmta.smtp.session_registry import STRESS_FRACTION, SessionCaps


@dataclass(frozen=True)
class Option:
    """Where one setting comes from. The TOML key is the field name."""

    name: str  # field of Settings
    env: str  # environment variable
    flag: str | None  # command-line flag; None for secrets (a command line is public)
    parse: Parser
    help: str  # "{default}" stands for the default (runtime/settings.py, help_text)
    metavar: str = "VALUE"
    serve_only: bool = False  # the flag exists on `vmta serve` only
    allow_empty: bool = False  # an empty environment variable is a value, not unset
    in_bytes: bool = False  # the default is shown in MiB too


OPTIONS: tuple[Option, ...] = (
    Option(
        "data_dir", "VMTA_DATA_DIR", "--data-dir", _path,
        "data directory: SQLite store, admin-token, delivery log (default {default})", "DIR",
    ),
    Option(
        "database_url", "VMTA_DATABASE_URL", "--database-url", _text,
        "database URL, e.g. postgresql://user:password@host:5432/db"
        " (default: SQLite in the data directory)", "URL",
    ),
    Option(
        "log_level", "VMTA_LOG_LEVEL", "--log-level", _log_level,
        "DEBUG, INFO, WARNING or ERROR (default {default})", "LEVEL",
    ),
    Option(
        "api_listen", "VMTA_API_LISTEN", "--listen", _listen,
        "API address HOST:PORT (default {default}; port 0 picks a free port)",
        "HOST:PORT", serve_only=True,
    ),
    Option(
        "api_token", "VMTA_API_TOKEN", None, _secret,
        "secret of the `admin` API credential, set at start-up"
        f" (at least {MIN_TOKEN_LENGTH} characters)",
    ),
    Option(
        "smtp_listen", "VMTA_SMTP_LISTEN", "--smtp-listen", _listen,
        "SMTP injection address HOST:PORT (default {default})", "HOST:PORT",
        serve_only=True,
    ),
    Option(
        "hostname", "VMTA_HOSTNAME", "--hostname", _hostname,
        "this MTA's host name: SMTP greeting, Received headers, bounces"
        " (default: the host's FQDN)", "NAME", serve_only=True,
    ),
    Option(
        "smtp_max_message_size", "VMTA_SMTP_MAX_MESSAGE_SIZE", None, _integer(1024, 2**31),
        "largest message accepted, in bytes (SIZE; default {default})", in_bytes=True,
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
        " X-GreenArrow-MtaID; default {default})",
    ),
    Option(
        "retry_backoff", "VMTA_RETRY_BACKOFF", None, _seconds_list,
        "seconds to wait after the 1st, 2nd, ... failed attempt; the last repeats"
        " (default {default})",
    ),
    Option(
        "max_queue_lifetime", "VMTA_MAX_QUEUE_LIFETIME", None, _seconds,
        "seconds a message may stay queued before it fails (default {default})",
    ),
    Option(
        "max_messages_per_connection", "VMTA_MAX_MESSAGES_PER_CONNECTION", None,
        _integer(1, 100_000),
        "messages sent over one connection before it is closed (default {default})",
    ),
    Option(
        "connection_idle_timeout", "VMTA_CONNECTION_IDLE_TIMEOUT", None, _seconds,
        "seconds an outbound connection may stay idle before QUIT (default {default})",
    ),
    Option(
        "connect_timeout", "VMTA_CONNECT_TIMEOUT", None, _seconds,
        "seconds allowed to connect, proxy tunnel included (default {default})",
    ),
    Option(
        "dns_servers", "VMTA_DNS_SERVERS", None, _dns_servers,
        "DNS servers for MX look-ups, comma-separated, each IP[:port] ([IPv6]:port)"
        " (default: the system's /etc/resolv.conf)",
    ),
    Option(
        "delivery_port", "VMTA_DELIVERY_PORT", None, _integer(1, 65535),
        "port of the MX hosts vmta delivers to (default {default}; another value is for tests)",
    ),
    Option(
        "external_mta_failures", "VMTA_EXTERNAL_MTA_FAILURES", None, _integer(1, 1000),
        "consecutive proxy/connect failures after which an external MTA is suspended"
        " (default {default})",
    ),
    Option(
        "external_mta_suspension", "VMTA_EXTERNAL_MTA_SUSPENSION", None, _seconds,
        "seconds an external MTA stays suspended; its mail waits meanwhile (default {default})",
    ),
    Option(
        "finished_retention", "VMTA_FINISHED_RETENTION", None, _seconds,
        "seconds a finished message (every recipient delivered or failed) stays inspectable"
        " before it is deleted (default {default})",
    ),
    Option(
        "workers", "VMTA_WORKERS", "--workers", _integer(1, 64),
        "processes that accept SMTP and deliver, sharing the SMTP port, the spool and the"
        " throttles (default {default}; set it to the number of CPU cores to use them all,"
        " see docs/architecture.md \"Worker processes\")", "N", serve_only=True,
    ),
    Option(
        "max_in_memory", "VMTA_MAX_IN_MEMORY", None, _integer(100, 10_000_000),
        "recipients the engine holds in memory at once; the rest wait in the spool"
        " (default {default}; message bodies are never held)",
    ),
    Option(
        "max_queued", "VMTA_MAX_QUEUED", None, _integer(0, 2**62),
        "recipients waiting in the spool above which SMTP injection answers `451 4.3.2`"
        " (default {default}; 0: no bound)",
    ),
    Option(
        "min_free_disk", "VMTA_MIN_FREE_DISK", None, _integer(0, 2**62),
        "bytes that must stay free under the data directory, else injection answers"
        " `452 4.3.1` (default {default}; 0: not checked)", in_bytes=True,
    ),
    Option(
        "path_failures_before_delay", "VMTA_PATH_FAILURES_BEFORE_DELAY", None,
        _integer(1, 10_000),
        "consecutive connection failures of an egress path after which everything waiting"
        " on it is deferred and the path is only probed again later (default {default})",
    ),
    Option(
        "path_failure_delay", "VMTA_PATH_FAILURE_DELAY", None, _seconds,
        "seconds before a failing egress path is probed again with one connection"
        " (default {default})",
    ),
    Option(
        "max_connection_rate", "VMTA_MAX_CONNECTION_RATE", None, _rate,
        "new connections a second per egress path at most (default {default}; 0: no cap)",
    ),
    Option(
        "rabbitmq_url", "VMTA_RABBITMQ_URL", None, _amqp_url,
        "RabbitMQ broker, amqp://user:password@host:5672/vhost: MailerQ message JSON is"
        " consumed from the outbox queue and delivery results are published as MailerQ"
        " result JSON (default: none; never logged)",
    ),
    Option(
        "rabbitmq_outbox", "VMTA_RABBITMQ_OUTBOX", None, _queue_name,
        "the queue MailerQ messages are consumed from (default {default})",
    ),
    Option(
        "allow_plaintext_auth", "VMTA_ALLOW_PLAINTEXT_AUTH", None, _boolean,
        "allow sending relay passwords without TLS to non-loopback servers"
        " (default {default})",
    ),
    Option(
        "redis_url", "VMTA_REDIS_URL", None, _redis_url,
        "Redis for throttles and Dynamic Delivery backoff shared by every node,"
        " e.g. redis://host:6379/0 (default: none, each node throttles on its own)",
    ),
    Option(
        "redis_namespace", "VMTA_REDIS_NAMESPACE", None, _namespace,
        "prefix of vmta's keys in Redis; one per cluster sharing a Redis (default {default})",
    ),
    Option(
        "redis_lease", "VMTA_REDIS_LEASE", None, _seconds,
        "seconds after which the connection slots of a node that stopped renewing them"
        " come back to the others (default {default})",
    ),
    Option(
        "claim_lease", "VMTA_CLAIM_LEASE", None, _seconds,
        "seconds a node's claim on queued work lasts unrenewed: the work of a node that"
        " died goes to the others this long after its last renewal (default {default})",
    ),
    Option(
        "smtp_max_sessions", "VMTA_SMTP_MAX_SESSIONS", None, _integer(1, 1_000_000),
        "SMTP injection sessions open at once on the node (all `VMTA_WORKERS` processes"
        " together); more get `421 4.7.0` at connect (default {default})",
    ),
    Option(
        "smtp_max_sessions_per_client", "VMTA_SMTP_MAX_SESSIONS_PER_CLIENT", None,
        _integer(1, 1_000_000),
        "SMTP injection sessions open at once from one client address, on the node"
        " (default {default})",
    ),
    Option(
        "smtp_stress_timeout", "VMTA_SMTP_STRESS_TIMEOUT", None, _seconds,
        "idle timeout of injection sessions once they reach"
        f" {STRESS_FRACTION:.0%} of `VMTA_SMTP_MAX_SESSIONS`,"
        f" instead of {SessionCaps.timeout:g} s"
        " (default {default})",
    ),
    Option(
        "smtp_shutdown_grace", "VMTA_SMTP_SHUTDOWN_GRACE", None, _seconds,
        "seconds a stopping vmta lets SMTP transactions in DATA finish before it says"
        " `421 4.3.2` (default {default})",
    ),
    Option(
        "smtp_auth_admin", "VMTA_SMTP_AUTH_ADMIN", None, _boolean,
        "SMTP AUTH also accepts `admin` credentials, not only `submit` ones"
        " (default {default})",
    ),
    Option(
        "relay_tls", "VMTA_RELAY_TLS", None, _relay_tls,
        "TLS policy towards relay servers: `opportunistic`, `required` or `verified`, for"
        " all (a bare value) or per relay server (`NAME=POLICY`), comma-separated"
        f" (default: {RelayTlsPolicies.default}; credentials always need a verified"
        " certificate)",
    ),
    Option(
        "relay_ca_file", "VMTA_RELAY_CA_FILE", None, _path,
        "PEM file of the CAs that relay certificates are verified against, instead of"
        " the system's store",
    ),
    Option(
        "loopback_counts_as_remote", "VMTA_LOOPBACK_COUNTS_AS_REMOTE", None, _boolean,
        "FOR TESTS ONLY: treat loopback relay peers as remote ones for the TLS and"
        " credential rules (default {default})",
    ),
    Option(
        "events_http_url", "VMTA_EVENTS_HTTP_URL", None, _http_url,
        "POST every delivery event here as GreenArrow-style JSON (default: no HTTP events;"
        " see docs/events.md)",
    ),
    Option(
        "events_http_batch", "VMTA_EVENTS_HTTP_BATCH", None, _integer(1, 1000),
        "events per POST, a JSON array of up to that many, an array even for one"
        " (default {default})",
    ),
    Option(
        "events_http_timeout", "VMTA_EVENTS_HTTP_TIMEOUT", None, _seconds,
        "seconds an event POST may take before it counts as failed (default {default})",
    ),
    Option(
        "events_retry_max", "VMTA_EVENTS_RETRY_MAX", None, _seconds,
        "longest wait, in seconds, between two tries of a failing event destination;"
        f" waits start at {SenderSettings.retry_initial:g} s and double"
        " (default {default})",
    ),
    Option(
        "rabbitmq_results", "VMTA_RABBITMQ_RESULTS", None, _result_queue,
        "queue for every final result, success or failure; empty turns it off"
        " (default {default})", allow_empty=True,
    ),
    Option(
        "rabbitmq_success", "VMTA_RABBITMQ_SUCCESS", None, _result_queue,
        "queue for successful deliveries; empty turns it off (default {default})",
        allow_empty=True,
    ),
    Option(
        "rabbitmq_failure", "VMTA_RABBITMQ_FAILURE", None, _result_queue,
        "queue for failed deliveries; empty turns it off (default {default})",
        allow_empty=True,
    ),
    Option(
        "rabbitmq_retry", "VMTA_RABBITMQ_RETRY", None, _result_queue,
        "queue for deferred attempts that will be retried; empty turns it off"
        " (default {default})", allow_empty=True,
    ),
    # ---- the feedback loop: event forms and the bad-address threshold (docs/events.md) ----
    Option(
        "events_http_json", "VMTA_EVENTS_HTTP_JSON", None, _boolean,
        "false: GreenArrow's older form, one `application/x-www-form-urlencoded` event per"
        " POST (default {default}: JSON arrays)",
    ),
    Option(
        "events_http_url_delivery_attempt", "VMTA_EVENTS_HTTP_URL_DELIVERY_ATTEMPT", None,
        _http_url, "POST `delivery_attempt` events here instead of `VMTA_EVENTS_HTTP_URL`",
    ),
    Option(
        "events_http_url_bounce_all", "VMTA_EVENTS_HTTP_URL_BOUNCE_ALL", None, _http_url,
        "POST `bounce_all` events here instead of `VMTA_EVENTS_HTTP_URL`",
    ),
    Option(
        "events_http_url_bounce_bad_address", "VMTA_EVENTS_HTTP_URL_BOUNCE_BAD_ADDRESS", None,
        _http_url, "POST `bounce_bad_address` events here instead of `VMTA_EVENTS_HTTP_URL`",
    ),
    Option(
        "events_http_url_scomp", "VMTA_EVENTS_HTTP_URL_SCOMP", None, _http_url,
        "POST `scomp` (spam complaint) events here instead of `VMTA_EVENTS_HTTP_URL`",
    ),
    Option(
        "bad_address_hard", "VMTA_BAD_ADDRESS_HARD", None, _integer(0, 1000),
        "hard bounces that make a recipient a bad address, per list; 0: never"
        " (default {default}; see docs/events.md#bad-addresses)",
    ),
    Option(
        "bad_address_soft", "VMTA_BAD_ADDRESS_SOFT", None, _integer(0, 1000),
        "soft bounces within `VMTA_BAD_ADDRESS_DAYS` that make a recipient a bad address,"
        " per list; 0: never (default {default})",
    ),
    Option(
        "bad_address_days", "VMTA_BAD_ADDRESS_DAYS", None, _integer(1, 3650),
        "days within which soft bounces count (default {default})",
    ),
    Option(
        "suppress_bad_addresses", "VMTA_SUPPRESS_BAD_ADDRESSES", None, _boolean,
        "a bad address also joins the suppression list (default {default})",
    ),
    # ---- what comes back: bounces and complaints (docs/feedback.md) ----
    Option(
        "inbound_listen", "VMTA_INBOUND_LISTEN", "--inbound-listen", _listen,
        "inbound SMTP address HOST:PORT for bounces, complaints and forwarding mailboxes"
        " (default: none, no inbound listener; see docs/feedback.md)", "HOST:PORT",
        serve_only=True,
    ),
    Option(
        "rabbitmq_reports", "VMTA_RABBITMQ_REPORTS", None, _result_queue,
        "queue for the parsed bounces and complaints received; empty turns it off"
        " (default {default})", allow_empty=True,
    ),
    # ---- mail loops (domain/paths/mail_loops.py) ----
    Option(
        "max_hops", "VMTA_MAX_HOPS", None, _integer(1, 10_000),
        "a message with more `Received:` fields than this is refused at DATA with"
        f" `{TOO_MANY_HOPS_REPLY}`"
        " (default {default}; see docs/mail-loops.md)",
    ),
    Option(
        "mx_allow_loopback", "VMTA_MX_ALLOW_LOOPBACK", None, _boolean,
        "use MX answers and address literals that are loopback, unspecified or link-local"
        " (default {default}: such mail fails with `5.4.6`; for tests and benchmarks that"
        " publish loopback MX hosts)",
    ),
    # ---- operators' first week (docs/operations.md) ----
    Option(
        "log_messages", "VMTA_LOG_MESSAGES", None, _message_log,
        "`each`: one INFO line per accepted message and per final outcome; `minute`: one"
        " summary line a minute; `off`: neither (default {default}; see docs/operations.md)",
    ),
)  # fmt: skip
