"""Delivery events: what an outcome tells the sender's application, in the two forms
vmta offers (docs/events.md).

- GreenArrow's Event Notification System form: ``delivery_attempt`` for every attempt,
  and ``bounce_all`` for every final failure, with the message's campaign and tracking ids
  (the kept ``X-GreenArrow-*`` header values).
- MailerQ's result JSON: the message's JSON (without ``mime``) plus its ``results``, one
  per attempt so far, and the result queues it belongs to (``success``, ``failure``,
  ``retry``; ``results`` for the final ones).

Pure: the spool builds events from an outcome and the facts of its message inside the
transaction that records the outcome, and stores them; the event sender renders them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from vmta.domain.spool_records import DELIVERED, FAILED, QUEUED, Outcome

DELIVERY_ATTEMPT = "delivery_attempt"
BOUNCE_ALL = "bounce_all"
EVENT_TYPES = (DELIVERY_ATTEMPT, BOUNCE_ALL)

# Result kinds, named as MailerQ's result queues are.
SUCCESS = "success"
FAILURE = "failure"
RETRY = "retry"

# GreenArrow event field -> the kept header it comes from (names as the intake keeps them).
TRACKING_FIELDS = {
    "mailclass": "x-greenarrow-mailclass",
    "sendid": "x-greenarrow-sendid",
    "listid": "x-greenarrow-listid",
    "instanceid": "x-greenarrow-instanceid",
    "click_tracking_id": "x-greenarrow-click-tracking-id",
}

_REPLY = re.compile(r"\s*([2-5][0-9]{2})(?:[ -]|$)\s*(?:([245]\.[0-9]{1,3}\.[0-9]{1,3})(?:\s+|$))?")


@dataclass(frozen=True)
class MessageFacts:
    """What the spool knows of the outcome's message and recipient besides the outcome."""

    address: str
    attempts_before: int  # attempts of this recipient before this outcome
    mail_from: str
    received_at: float
    is_bounce: bool
    kept_headers: Mapping[str, str] | None = None
    # The MailerQ message JSON the message came with (via /v1/inject or the AMQP
    # outbox), without ``mime``; None for mail injected otherwise.
    mailerq_json: Mapping[str, Any] | None = None
    # MailerQ results of this recipient's earlier attempts, oldest first.
    earlier_results: Sequence[Mapping[str, Any]] = ()


@dataclass(frozen=True)
class Event:
    """One event as the outbox stores it: ``payload`` holds each form's rendering
    (``greenarrow``; ``mailerq`` and ``kind`` for delivery attempts)."""

    event_type: str
    at: float
    message_id: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class EventSubscription:
    """A destination and the event types it receives."""

    name: str
    event_types: frozenset[str]


@dataclass(frozen=True)
class ParsedReply:
    code: int | None
    enhanced: str | None
    description: str


def parse_reply(reply: str | None) -> ParsedReply:
    """Code, RFC 3463 enhanced status code and the rest of a recorded reply text such as
    ``550 5.1.1 No such user``; vmta's own reasons have a code too."""
    text = reply or ""
    match = _REPLY.match(text)
    if match is None:
        return ParsedReply(None, None, text.strip())
    return ParsedReply(int(match.group(1)), match.group(2), text[match.end() :].strip())


def attempt_status(outcome: Outcome) -> str:
    """GreenArrow's ``status`` of a delivery attempt: success, deferral, failure, or
    failure_toolong when the message failed because its time in the queue ran out: a
    final failure on a temporary (4xx) reply, or with RFC 3463 X.4.7 (delivery time
    expired)."""
    if outcome.state == DELIVERED:
        return "success"
    if outcome.state == QUEUED:
        return "deferral"
    parsed = parse_reply(outcome.reply)
    expired = (parsed.code is not None and 400 <= parsed.code < 500) or (
        parsed.enhanced is not None and parsed.enhanced.endswith(".4.7")
    )
    return "failure_toolong" if expired else "failure"


def bounce_classification(outcome: Outcome) -> tuple[str, int]:
    """(bounce_type, bounce_code) of a final failure, in the categories GreenArrow's
    bounce processor reports: ``h`` (hard) only for a bad address (code 10); otherwise
    ``s`` with 20 (soft, including expiry), 21 (bad destination domain), 22 (mailbox
    full), 23 (message too large), 50 (mail blocked by policy), 40 (any other
    bounce). Decided from the RFC 3463 status code."""
    if attempt_status(outcome) == "failure_toolong":
        return "s", 20
    status = parse_reply(outcome.reply).enhanced or ""
    subject_detail = status[2:] if len(status) > 2 else ""
    if subject_detail in ("1.2", "4.4"):
        return "s", 21
    if subject_detail.startswith("1."):
        return "h", 10
    if subject_detail == "2.2":
        return "s", 22
    if subject_detail in ("3.4", "2.3"):
        return "s", 23
    if subject_detail.startswith("7."):
        return "s", 50
    return "s", 40


def tracking_values(kept_headers: Mapping[str, str] | None) -> dict[str, str | None]:
    """The event fields that come from kept headers (null when absent)."""
    by_name = {name.lower(): value for name, value in (kept_headers or {}).items()}
    return {field: by_name.get(header) for field, header in TRACKING_FIELDS.items()}


def wants_event(outcome: Outcome) -> bool:
    """An attempt, or a final outcome reached without one, is an event; waiting (no
    connection tried, still queued) is not."""
    return outcome.attempted or outcome.state != QUEUED


def mailerq_time(at: float) -> str:
    """MailerQ's time format: UTC ``YYYY-MM-DD HH:MM:SS``."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S")


def mailerq_result(
    *,
    at: float,
    state: str,
    reply: str | None,
    source_ip: str | None,
    remote_ip: str | None,
) -> dict[str, Any]:
    """One entry of MailerQ's ``results``. ``state`` names where the result came from:
    ``connect`` (no SMTP session), ``data`` (the message was accepted), ``smtp`` (a
    reply within the transaction; vmta does not record to which command)."""
    parsed = parse_reply(reply)
    return {
        "time": mailerq_time(at),
        "from": source_ip or "",
        "to": remote_ip or "",
        "state": state,
        "result": "ok" if state == "data" else "error",
        "code": parsed.code or 0,
        "status": parsed.enhanced or "",
        "description": parsed.description,
    }


def result_state(outcome_label: str, remote_ip: str | None) -> str:
    """The MailerQ ``state`` of a recorded attempt (see ``mailerq_result``)."""
    if outcome_label == DELIVERED:
        return "data"
    return "smtp" if remote_ip else "connect"


def result_kind(outcome: Outcome) -> str:
    if outcome.state == DELIVERED:
        return SUCCESS
    if outcome.state == FAILED:
        return FAILURE
    return RETRY


def build_events(outcome: Outcome, facts: MessageFacts) -> list[Event]:
    """The events of one outcome: a delivery_attempt, and for a final failure of a
    message that is not itself a bounce, a bounce_all."""
    if not wants_event(outcome):
        return []
    tracking = tracking_values(facts.kept_headers)
    status = attempt_status(outcome)
    common: dict[str, Any] = {
        "event_time": int(outcome.at),
        "email": facts.address,
        "message_id": outcome.message_id,
        **tracking,
        "mtaid": outcome.virtual_mta,
        "outmtaid_ip": outcome.source_ip,
    }
    attempt = {
        "event_type": DELIVERY_ATTEMPT,
        **common,
        "status": status,
        "is_retry": 1 if facts.attempts_before > 0 else 0,
        "message": outcome.reply or "",
        "channel": "remote",
        "injected_time": int(facts.received_at),
        "sender": facts.mail_from,
        "effective_mtaid": outcome.effective_virtual_mta,
        "remote_host": outcome.remote_host,
        "remote_ip": outcome.remote_ip,
    }
    result = mailerq_result(
        at=outcome.at,
        state=result_state(outcome.outcome_label or outcome.state, outcome.remote_ip),
        reply=outcome.reply,
        source_ip=outcome.source_ip,
        remote_ip=outcome.remote_ip,
    )
    events = [
        Event(
            DELIVERY_ATTEMPT,
            outcome.at,
            outcome.message_id,
            {
                "greenarrow": attempt,
                "kind": result_kind(outcome),
                "mailerq": mailerq_document(facts, outcome.message_id, result),
            },
        )
    ]
    if outcome.state == FAILED and not facts.is_bounce:
        bounce_type, bounce_code = bounce_classification(outcome)
        bounce = {
            "event_type": BOUNCE_ALL,
            **common,
            "bounce_type": bounce_type,
            "bounce_code": bounce_code,
            "bounce_text": outcome.reply or "",
            "status": status,
        }
        events.append(Event(BOUNCE_ALL, outcome.at, outcome.message_id, {"greenarrow": bounce}))
    return events


def mailerq_json(mq_options: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The MailerQ message JSON a message came with, from what the spool keeps of it
    (``messages.mq_options``: its ``document`` is the JSON, or the ``x-mq-*`` headers as
    keys, without ``mime``; vmta.domain.mq_message)."""
    document = (mq_options or {}).get("document")
    return document if isinstance(document, Mapping) else None


def mailerq_document(
    facts: MessageFacts, queue_id: str, result: Mapping[str, Any]
) -> dict[str, Any]:
    """MailerQ's result JSON: the message JSON as it came, every key kept but ``mime``
    (MailerQ drops the MIME data after delivery; vmta never keeps it in an event, so
    ``keepmime`` is not honoured), plus ``results``: the results the JSON already held
    (a message re-injected with its results), then every attempt of this recipient so
    far, oldest first. Mail that did not come as MailerQ JSON gets ``envelope`` and
    ``recipient``."""
    own = facts.mailerq_json or {}
    document: dict[str, Any] = {key: value for key, value in own.items() if key != "mime"}
    document.setdefault("envelope", facts.mail_from)
    document.setdefault("recipient", facts.address)
    carried = own.get("results")
    before = list(carried) if isinstance(carried, list) else []
    document["results"] = [*before, *facts.earlier_results, dict(result)]
    # Not a MailerQ key: lets a consumer match a result to the queue id vmta gave.
    document["vmta_queue_id"] = queue_id
    return document


def subscribers(event: Event, subscriptions: Iterable[EventSubscription]) -> list[str]:
    """The destinations that receive ``event``."""
    return [s.name for s in subscriptions if event.event_type in s.event_types]


# ---- rendering, at send time --------------------------------------------------------


def greenarrow_event(event_id: int, payload: Mapping[str, Any]) -> dict[str, Any]:
    """The GreenArrow-form JSON object of a stored event; ``id`` is the outbox id."""
    rendered: dict[str, Any] = {"id": event_id, **payload["greenarrow"]}
    return rendered


RESULT_QUEUE_KEYS = ("results", SUCCESS, FAILURE, RETRY)


def usable_queue_name(name: str) -> bool:
    """A queue name a message may choose: empty (none), or one the broker lets vmta
    declare (AMQP 0-9-1: at most 255 bytes; ``amq.`` names are the broker's). A message
    naming another is published to the configured queue instead, so that one message
    cannot stop its destination with a publish the broker refuses forever."""
    return not name.startswith("amq.") and len(name.encode()) <= 255


def mailerq_queues(payload: Mapping[str, Any], configured: Mapping[str, str]) -> list[str]:
    """The queues a delivery attempt's result goes to: its kind's queue, and ``results``
    for final ones (success, failure), as MailerQ's result queues work. The message's
    own names override the configured name of any of them: the keys that MailerQ's
    ``x-mq-results-queue``, ``-success-queue``, ``-failure-queue`` and ``-retry-queue``
    headers become (``results-queue`` and so on), and over those the message JSON's
    ``queues`` object. An empty name means none."""
    kind = str(payload.get("kind", RETRY))
    names = dict(configured)
    document = payload.get("mailerq") or {}
    if isinstance(document, Mapping):
        own = document.get("queues")
        overrides = [
            {key: document.get(f"{key}-queue") for key in RESULT_QUEUE_KEYS},
            own if isinstance(own, Mapping) else {},
        ]
        for override in overrides:
            for key in RESULT_QUEUE_KEYS:
                value = override.get(key)
                if isinstance(value, str) and usable_queue_name(value.strip()):
                    names[key] = value.strip()
    wanted = [kind] if kind == RETRY else ["results", kind]
    queues: list[str] = []
    for key in wanted:
        name = names.get(key, "")
        if name and name not in queues:
            queues.append(name)
    return queues
