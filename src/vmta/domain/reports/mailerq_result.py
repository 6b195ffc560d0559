"""One entry of MailerQ's ``results``: an attempt in MailerQ's own words
(docs/events.md, "RabbitMQ").

``state`` is where the attempt ended: the SMTP step (``connect``, ``intro`` for the
greeting, ``ehlo``, ``starttls``, ``authplain``/``authlogin``, ``mailfrom``, ``rcptto``,
``data``, and ``message`` for the reply after the final dot), or, for an outcome without
a session, ``dns`` (the recipient domain did not resolve), ``bind`` (the source address
could not be bound), ``process`` (vmta's own decision: expiry, a forced error, an
internal fault) or ``suppression`` (the recipient is suppressed). ``result`` is
``accepted`` (only with ``message``), ``error`` (a refusal, or a failure to connect),
``timeout`` (no answer in time), ``lost`` (the connection broke) or ``invalid`` (the
message could not be sent as it is).

Pure: standard library only.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from vmta.domain.attempts.reply_text import parse_reply
from vmta.domain.reports.feedback_events import REPORTS_QUEUE

# The RabbitMQ queues results go to, by their MailerQ role (VMTA_RABBITMQ_RESULTS and the
# others rename them; an empty name turns one off).
DEFAULT_QUEUES = {
    "results": "results",
    "success": "success",
    "failure": "failure",
    "retry": "retry",
    REPORTS_QUEUE: "reports",
}

STATES = (
    "connect",
    "intro",
    "ehlo",
    "starttls",
    "authlogin",
    "authplain",
    "mailfrom",
    "rcptto",
    "data",
    "message",
    "dns",
    "bind",
    "process",
    "suppression",
)
ACCEPTED = "accepted"
ERROR = "error"
RESULTS = (ACCEPTED, ERROR, "timeout", "lost", "invalid")


def mailerq_time(at: float) -> str:
    """MailerQ's time format: UTC ``YYYY-MM-DD HH:MM:SS``."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S")


def attempt_state(stage: str | None, *, delivered: bool, remote_ip: str | None) -> str:
    """The ``state`` of an attempt: its recorded stage, or for a record from before vmta
    kept one, the best it can tell (``message`` for a delivery, ``rcptto`` for a refusal
    in a session, ``connect`` without one)."""
    if stage in STATES:
        return str(stage)
    if delivered:
        return "message"
    return "rcptto" if remote_ip else "connect"


def attempt_result(state: str, *, delivered: bool, ended: str | None) -> str:
    """The ``result`` of an attempt in ``state``: ``accepted`` only for a delivery after
    the final dot; otherwise how it ended, ``error`` when nothing more is known."""
    if delivered and state == "message":
        return ACCEPTED
    if ended in RESULTS and ended != ACCEPTED:
        return str(ended)
    return ERROR


def result_entry(
    *,
    at: float,
    delivered: bool,
    stage: str | None,
    ended: str | None,
    reply: str | None,
    source_ip: str | None,
    remote_ip: str | None,
    remote_host: str | None,
    messages: int | None,
    dsn: bool | None,
) -> dict[str, Any]:
    """One entry of ``results``, every field present (MailerQ writes them all)."""
    parsed = parse_reply(reply)
    state = attempt_state(stage, delivered=delivered, remote_ip=remote_ip)
    return {
        "time": mailerq_time(at),
        "from": source_ip or "",
        "to": remote_ip or "",
        "mta": remote_host or "" if remote_ip else "",
        "messages": messages or 0,
        "code": parsed.code or 0,
        "status": parsed.enhanced or "",
        "description": parsed.description,
        "dsn": bool(dsn),
        "state": state,
        "result": attempt_result(state, delivered=delivered, ended=ended),
    }
