"""What `vmta serve` says about itself when it starts: the settings in effect (secrets
hidden), a loud warning for a host name that is not fully qualified, and any ``VMTA_*``
environment variable that is no setting (a typo would otherwise be silently ignored; the
TOML file refuses unknown keys, but an environment carries variables of other programs
and older versions too, so these are warned about, never fatal).
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

from vmta import __version__
from vmta.runtime.setting_options import OPTIONS
from vmta.runtime.settings import Settings

log = logging.getLogger("vmta.startup")

# Read by vmta but not a setting of its own (the TOML file's path); and the test suite's
# own variables (VMTA_TEST_WORKERS and the like), which vmta itself never reads.
OTHER_VARIABLES = frozenset({"VMTA_CONFIG"})
TEST_PREFIX = "VMTA_TEST_"


def known_variables() -> frozenset[str]:
    """Every ``VMTA_*`` variable vmta reads: derived from ``OPTIONS``, so a setting added
    there is known here without another list to keep."""
    return frozenset(option.env for option in OPTIONS) | OTHER_VARIABLES


def unknown_variables(environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """Each ``VMTA_*`` name in ``environ`` that vmta does not read, with the closest known
    name when one is close (a likely typo)."""
    known = known_variables()
    found = []
    for name in sorted(environ):
        if name.startswith("VMTA_") and name not in known and not name.startswith(TEST_PREFIX):
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
            found.append((name, close[0] if close else None))
    return found


def warn_unknown_variables(environ: Mapping[str, str]) -> None:
    for name, close in unknown_variables(environ):
        hint = f"; did you mean {close}?" if close else ""
        log.warning("ignoring environment variable %s: vmta has no such setting%s", name, hint)


def hostname_problem(hostname: str) -> str | None:
    """Why ``hostname`` is a poor name for this MTA, or None. It goes into the SMTP banner,
    EHLO, Received fields and Message-IDs, where RFC 5321 §4.1.1.1 wants a fully qualified
    domain name; receivers reject or score down a bare or local name."""
    name = hostname.rstrip(".").lower()
    if "." not in name:
        return f"host name {hostname!r} is not a fully qualified domain name"
    if name == "localhost" or name.endswith((".localhost", ".localdomain", ".local")):
        return f"host name {hostname!r} is a local name, not one the Internet knows"
    return None


def without_password(url: str) -> str:
    """``url`` with any password replaced by ``***`` (database, Redis, RabbitMQ)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port is not None else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


def redis_location(url: str) -> str:
    """Where Redis is, never its URL: the URL may carry a user and password, and vmta logs
    no part of them (only host, port, database number, or the socket's path)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"socket {parts.path}"
    database = parts.path.strip("/") or "0"
    tls = " over TLS" if parts.scheme == "rediss" else ""
    return f"{parts.hostname}:{parts.port or 6379} database {database}{tls}"


def summary(settings: Settings) -> list[str]:
    """The settings in effect that an operator most often needs to check, one per line."""
    retry = ", ".join(f"{step:g}" for step in settings.retry_backoff)
    redis = "none (throttles are per node)"
    if settings.redis_url:
        redis = redis_location(settings.redis_url)
    return [
        f"vmta {__version__} starting",
        f"hostname: {settings.hostname}",
        f"data directory: {settings.data_dir.resolve()}",
        f"database: {without_password(settings.effective_database_url)}",
        f"redis: {redis}",
        f"DNS servers: {', '.join(settings.dns_servers) or 'the system resolver'}",
        f"delivery port: {settings.delivery_port}",
        f"retry schedule (s): {retry}; messages expire after {settings.max_queue_lifetime:g} s",
        f"workers: {settings.workers}; message log: {settings.log_messages}",
    ]


def report(settings: Settings, environ: Mapping[str, str]) -> None:
    """Log the summary and every warning (`vmta serve` calls this first)."""
    for line in summary(settings):
        log.info("%s", line)
    problem = hostname_problem(settings.hostname)
    if problem is not None:
        banner = "!" * 72
        log.warning(banner)
        log.warning(
            "%s: it is used in the SMTP greeting, EHLO, Received fields and Message-IDs;"
            " set VMTA_HOSTNAME (or --hostname) to this host's public FQDN",
            problem,
        )
        log.warning(banner)
    warn_unknown_variables(environ)
