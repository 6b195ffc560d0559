"""Delivery events: what an outcome tells the sender's application, in the two forms
vmta offers (docs/events.md).

- GreenArrow's Event Notification System form: ``delivery_attempt`` for every attempt,
  ``bounce_all`` for every final failure (``synchronous``: seen in vmta's own session),
  ``bounce_bad_address`` when a recipient crosses the bad-address threshold
  (vmta.store.bad_addresses), with the message's campaign and tracking ids (the kept
  ``X-GreenArrow-*`` header values). An integer field is omitted when unknown, never
  null: typed consumers cannot put null in an int.
- MailerQ's result JSON: the message's JSON (without ``mime``) plus its ``results``, one
  per attempt so far (vmta.domain.reports.mailerq_result), and the result queues it belongs to
  (``success``, ``failure``, ``retry``; ``results`` for the final ones).

Pure: the spool builds events from an outcome and the facts of its message inside the
transaction that records the outcome, and stores them; the event sender renders them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vmta.domain.attempts.reply_text import ParsedReply, parse_reply
from vmta.domain.attempts.spool_records import DELIVERED, FAILED, QUEUED, Outcome
from vmta.domain.reports.bounce_classification import classify
from vmta.domain.reports.mailerq_result import mailerq_time, result_entry

DELIVERY_ATTEMPT = "delivery_attempt"
BOUNCE_ALL = "bounce_all"
BOUNCE_BAD_ADDRESS = "bounce_bad_address"
SCOMP = "scomp"
EVENT_TYPES = (DELIVERY_ATTEMPT, BOUNCE_ALL, BOUNCE_BAD_ADDRESS, SCOMP)

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
# GreenArrow reports these lower-cased.
LOWER_CASED = ("sendid", "listid")

__all__ = ["ParsedReply", "mailerq_time", "parse_reply"]


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
    size: int | None = None  # the message's size in bytes


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


def is_expiry(outcome: Outcome) -> bool:
    """Whether a final failure came from the message's time in the queue running out: a
    final failure on a temporary (4xx) reply, or with RFC 3463 X.4.7 (delivery time
    expired)."""
    parsed = parse_reply(outcome.reply)
    return (parsed.code is not None and 400 <= parsed.code < 500) or (
        parsed.enhanced is not None and parsed.enhanced.endswith(".4.7")
    )


def attempt_status(outcome: Outcome) -> str:
    """GreenArrow's ``status`` of a delivery attempt: success, deferral, failure, or
    failure_toolong when the message failed because its time in the queue ran out."""
    if outcome.state == DELIVERED:
        return "success"
    if outcome.state == QUEUED:
        return "deferral"
    return "failure_toolong" if is_expiry(outcome) else "failure"


def bounce_classification(outcome: Outcome) -> tuple[str, int]:
    """(bounce_type, bounce_code) of a final failure: the one table of
    vmta.domain.reports.bounce_classification, applied to the reply's RFC 3463 status."""
    found = classify(parse_reply(outcome.reply).enhanced, expired=is_expiry(outcome))
    return found.bounce_type, found.bounce_code


def tracking_values(kept_headers: Mapping[str, str] | None) -> dict[str, str | None]:
    """The event fields that come from kept headers (null when absent); ``sendid`` and
    ``listid`` lower-cased, as GreenArrow reports them."""
    by_name = {name.lower(): value for name, value in (kept_headers or {}).items()}
    values = {field: by_name.get(header) for field, header in TRACKING_FIELDS.items()}
    for field in LOWER_CASED:
        value = values[field]
        if value is not None:
            values[field] = value.lower()
    return values


def wants_event(outcome: Outcome) -> bool:
    """An attempt, or a final outcome reached without one, is an event; waiting (no
    connection tried, still queued) is not."""
    return outcome.attempted or outcome.state != QUEUED


def outcome_result(outcome: Outcome) -> dict[str, Any]:
    """The MailerQ ``results`` entry of an outcome."""
    return result_entry(
        at=outcome.at,
        delivered=outcome.state == DELIVERED,
        stage=outcome.stage,
        ended=outcome.result,
        reply=outcome.reply,
        source_ip=outcome.source_ip,
        remote_ip=outcome.remote_ip,
        remote_host=outcome.remote_host,
        messages=outcome.session_messages,
        dsn=outcome.remote_dsn,
    )


def result_kind(outcome: Outcome) -> str:
    if outcome.state == DELIVERED:
        return SUCCESS
    if outcome.state == FAILED:
        return FAILURE
    return RETRY


def without_none_integers(fields: dict[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """``fields`` without the integer fields ``names`` whose value is unknown (None)."""
    for name in names:
        if fields.get(name, 0) is None:
            del fields[name]
    return fields


def common_fields(
    *, at: float, address: str, message_id: str, kept_headers: Mapping[str, str] | None
) -> dict[str, Any]:
    """The fields every GreenArrow event has (``id``, ``event_unique_id`` and
    ``server_id`` are added when it is sent; ``event_type`` by its kind)."""
    return {
        "event_time": int(at),
        "email": address,
        "message_id": message_id,
        **tracking_values(kept_headers),
    }


def bounce_all_fields(
    common: Mapping[str, Any],
    *,
    status: str | None,
    text: str,
    synchronous: bool,
    sending: Mapping[str, Any] | None = None,
    expired: bool = False,
) -> dict[str, Any]:
    """A ``bounce_all`` event's GreenArrow fields: ``common`` (``common_fields``), the
    sender's side when known, and the class of RFC 3463 ``status`` by the one table.
    For a received bounce (``synchronous=False``) ``status`` is the DSN's ``Status:``
    and ``text`` its diagnostic."""
    found = classify(status, expired=expired)
    return without_none_integers(
        {
            "event_type": BOUNCE_ALL,
            **common,
            **(sending or {}),
            "bounce_type": found.bounce_type,
            "bounce_code": found.bounce_code,
            "bounce_text": text,
            "synchronous": synchronous,
        },
        ("outmtaid",),
    )


def build_events(outcome: Outcome, facts: MessageFacts) -> list[Event]:
    """The events of one outcome: a delivery_attempt, and for a final failure of a
    message that is not itself a bounce, a bounce_all."""
    if not wants_event(outcome):
        return []
    status = attempt_status(outcome)
    common = common_fields(
        at=outcome.at,
        address=facts.address,
        message_id=outcome.message_id,
        kept_headers=facts.kept_headers,
    )
    # The host connected to: none when no connection was made.
    connected = outcome.remote_ip is not None
    sending = {
        "mtaid": outcome.virtual_mta,
        "outmtaid": outcome.outmtaid,
        "outmtaid_ip": outcome.source_ip,
        "outmtaid_hostname": outcome.ehlo_name,
    }
    attempt = without_none_integers(
        {
            "event_type": DELIVERY_ATTEMPT,
            **common,
            "status": status,
            "is_retry": 1 if facts.attempts_before > 0 else 0,
            "message": outcome.reply or "",
            **sending,
            "mx_hostname": outcome.remote_host if connected else None,
            "mx_ip": outcome.remote_ip,
            "channel": "remote",
            "timestamp": round(outcome.at, 6),
            "injected_time": int(facts.received_at),
            "message_size": facts.size,
            "sender": facts.mail_from,
            "from_address": facts.mail_from,
            "effective_mtaid": outcome.effective_virtual_mta,
            "remote_host": outcome.remote_host,
            "remote_ip": outcome.remote_ip,
        },
        ("outmtaid", "message_size"),
    )
    result = outcome_result(outcome)
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
        bounce = bounce_all_fields(
            common,
            status=parse_reply(outcome.reply).enhanced,
            text=outcome.reply or "",
            synchronous=True,
            sending=sending,
            expired=is_expiry(outcome),
        )
        bounce["status"] = status
        events.append(Event(BOUNCE_ALL, outcome.at, outcome.message_id, {"greenarrow": bounce}))
    return events


def mailerq_json(mq_options: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The MailerQ message JSON a message came with, from what the spool keeps of it
    (``messages.mq_options``: its ``document`` is the JSON, or the ``x-mq-*`` headers as
    keys, without ``mime``; vmta.domain.message.mq_message)."""
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


def greenarrow_event(
    event_id: int, payload: Mapping[str, Any], server_id: str | None = None
) -> dict[str, Any]:
    """The GreenArrow-form JSON object of a stored event: ``id`` is the outbox id, and
    ``event_unique_id`` the same as a string (GreenArrow's de-duplication key);
    ``server_id`` the node's name."""
    rendered: dict[str, Any] = {
        "id": event_id,
        "event_unique_id": str(event_id),
        "server_id": server_id,
        **payload["greenarrow"],
    }
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
