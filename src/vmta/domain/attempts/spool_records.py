"""The delivery engine's vocabulary: a message as accepted, one recipient claimed for
delivery (a job), what became of it (an outcome), and the states a recipient passes
through. The spool (``vmta.store.spool``) stores these; the engine works with them and
never with rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

QUEUED = "queued"
DELIVERED = "delivered"
FAILED = "failed"


@dataclass(frozen=True)
class NewMessage:
    id: str
    received_at: float
    expires_at: float
    mail_from: str
    recipients: Sequence[str]
    body: bytes
    vmta_selector: str | None = None
    client_ip: str | None = None
    auth_name: str | None = None
    is_bounce: bool = False
    # Header values removed before delivery but kept with the message (name -> value).
    kept_headers: Mapping[str, str] | None = None
    # MailerQ message options (ips, pool, tags, maxattempts, maxdelivertime, retries,
    # nextattempt, ...) from /v1/inject, the AMQP outbox or x-mq-* headers.
    mq_options: Mapping[str, Any] | None = None
    # ``body`` is in wire form (domain/message/wire_form.py) already; otherwise it is the message
    # as given, and the spool puts it in wire form as it stores it.
    wire_form: bool = False


@dataclass(frozen=True)
class Job:
    """One recipient of one message, claimed for delivery."""

    recipient_id: int
    message_id: str
    address: str
    attempts: int
    mail_from: str
    received_at: float
    expires_at: float
    vmta_selector: str | None
    routing_memory: dict[str, Any] | None
    is_bounce: bool
    mq_options: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Outcome:
    """What became of one recipient at one attempt (or why it was not attempted)."""

    recipient_id: int
    message_id: str
    at: float
    state: str  # queued (deferred or waiting), delivered, failed
    next_attempt_at: float | None = None
    reply: str | None = None
    attempted: bool = True  # False: waiting, no connection was tried (not an attempt)
    waiting_reason: str | None = None
    virtual_mta: str | None = None
    effective_virtual_mta: str | None = None
    source_ip: str | None = None
    remote_host: str | None = None
    remote_ip: str | None = None
    routing_memory: dict[str, Any] | None = None
    outcome_label: str = ""  # delivered, deferred, failed (for the attempt record)
    # Where the attempt ended and how (MailerQ's ``state`` and ``result``,
    # vmta.domain.reports.mailerq_result), and its connection: transactions begun on it so far,
    # whether the server offered DSN. None: not known.
    stage: str | None = None
    result: str | None = None
    session_messages: int | None = None
    remote_dsn: bool | None = None
    # The sender's side: the id of the IP address or relay server that sent, and the
    # EHLO name it gave.
    outmtaid: int | None = None
    ehlo_name: str | None = None
