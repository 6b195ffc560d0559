"""The event outbox on SQLite and PostgreSQL: events are written in the transaction of
their outcome, one delivery row per subscribed destination, claimed with leases and
forgotten once acknowledged."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select

from vmta.domain.attempts.spool_records import DELIVERED, FAILED, QUEUED, NewMessage, Outcome
from vmta.domain.reports.delivery_event import (
    BOUNCE_ALL,
    DELIVERY_ATTEMPT,
    EventSubscription,
    greenarrow_event,
)
from vmta.store.event_outbox import EventOutbox
from vmta.store.spool import SqlSpool
from vmta.store.store import Store
from vmta.store.tables import event_deliveries, events

T0 = 1_700_000_000.0
HTTP = EventSubscription("http", frozenset({DELIVERY_ATTEMPT, BOUNCE_ALL}))
AMQP = EventSubscription("rabbitmq", frozenset({DELIVERY_ATTEMPT}))
KEPT = {
    "X-GreenArrow-MailClass": "newsletter",
    "X-GreenArrow-SendID": "send-42",
    "X-GreenArrow-ListID": "list-7",
    "X-GreenArrow-InstanceID": "inst-1",
    "X-GreenArrow-Click-Tracking-ID": "ct-99",
}


def message(qid: str, rcpts: list[str], **changes: Any) -> NewMessage:
    values: dict[str, Any] = {
        "id": qid,
        "received_at": T0,
        "expires_at": T0 + 3600,
        "mail_from": "sender@example.com",
        "recipients": rcpts,
        "body": b"Subject: hi\r\n\r\nbody\r\n",
        "kept_headers": KEPT,
    }
    values.update(changes)
    return NewMessage(**values)


def outcome(recipient_id: int, qid: str, state: str, reply: str, at: float, **kw: Any) -> Outcome:
    label = {DELIVERED: "delivered", FAILED: "failed", QUEUED: "deferred"}[state]
    return Outcome(
        recipient_id,
        qid,
        at,
        state,
        reply=reply,
        outcome_label=label,
        virtual_mta="relay-1",
        source_ip="127.0.0.2",
        remote_host="mx.dest.test",
        remote_ip="127.0.0.1",
        next_attempt_at=at + 60 if state == QUEUED else None,
        **kw,
    )


def stored(store: Store) -> list[tuple[int, str, dict[str, Any], list[str]]]:
    with store.read() as conn:
        rows = conn.execute(select(events).order_by(events.c.id)).all()
        deliveries: dict[int, list[str]] = {}
        for d in conn.execute(select(event_deliveries).order_by(event_deliveries.c.destination)):
            deliveries.setdefault(d.event_id, []).append(d.destination)
    return [(r.id, r.event_type, r.payload, deliveries.get(r.id, [])) for r in rows]


def test_deferral_then_success_become_two_delivery_attempts(store: Store) -> None:
    spool = SqlSpool(store, "a", event_subscriptions=[HTTP, AMQP])
    (job,) = spool.accept([message("Q1", ["rcpt@dest.test"])], T0 + 300)
    spool.record(
        [
            outcome(
                job.recipient_id,
                "Q1",
                QUEUED,
                "451 4.7.1 try later",
                T0 + 1,
                stage="rcptto",
                session_messages=1,
                remote_dsn=True,
                outmtaid=7,
                ehlo_name="out.sender.test",
            )
        ]
    )
    assert len(spool.claim_due(T0 + 61, 10, T0 + 400)) == 1  # due again, claimed again
    spool.record(
        [
            outcome(
                job.recipient_id,
                "Q1",
                DELIVERED,
                "250 2.0.0 ok",
                T0 + 61.25,
                stage="message",
                session_messages=3,
                remote_dsn=False,
            )
        ]
    )

    rows = stored(store)
    assert [(t, d) for _, t, _, d in rows] == [
        (DELIVERY_ATTEMPT, ["http", "rabbitmq"]),
        (DELIVERY_ATTEMPT, ["http", "rabbitmq"]),
    ]
    first = greenarrow_event(rows[0][0], rows[0][2], "node-1")
    second = greenarrow_event(rows[1][0], rows[1][2], "node-1")
    assert first == {
        "id": rows[0][0],
        "event_unique_id": str(rows[0][0]),
        "server_id": "node-1",
        "event_type": "delivery_attempt",
        "event_time": int(T0 + 1),
        "email": "rcpt@dest.test",
        "message_id": "Q1",
        "mailclass": "newsletter",
        "sendid": "send-42",
        "listid": "list-7",
        "instanceid": "inst-1",
        "click_tracking_id": "ct-99",
        "mtaid": "relay-1",
        "outmtaid": 7,
        "outmtaid_ip": "127.0.0.2",
        "outmtaid_hostname": "out.sender.test",
        "mx_hostname": "mx.dest.test",
        "mx_ip": "127.0.0.1",
        "status": "deferral",
        "is_retry": 0,
        "message": "451 4.7.1 try later",
        "channel": "remote",
        "timestamp": T0 + 1,
        "injected_time": int(T0),
        "message_size": len(b"Subject: hi\r\n\r\nbody\r\n"),
        "sender": "sender@example.com",
        "from_address": "sender@example.com",
        "effective_mtaid": None,
        "remote_host": "mx.dest.test",
        "remote_ip": "127.0.0.1",
    }
    assert (second["status"], second["is_retry"], second["timestamp"]) == (
        "success",
        1,
        T0 + 61.25,
    )
    # No IP address or relay server id known: the integer field is left out, not null.
    assert "outmtaid" not in second
    # MailerQ's form carries every result so far, the deferral first, each as MailerQ
    # writes it (the earlier one read back from the attempt record).
    results = rows[1][2]["mailerq"]["results"]
    assert results == [
        {
            "time": "2023-11-14 22:13:21",
            "from": "127.0.0.2",
            "to": "127.0.0.1",
            "mta": "mx.dest.test",
            "messages": 1,
            "code": 451,
            "status": "4.7.1",
            "description": "try later",
            "dsn": True,
            "state": "rcptto",
            "result": "error",
        },
        {
            "time": "2023-11-14 22:14:21",
            "from": "127.0.0.2",
            "to": "127.0.0.1",
            "mta": "mx.dest.test",
            "messages": 3,
            "code": 250,
            "status": "2.0.0",
            "description": "ok",
            "dsn": False,
            "state": "message",
            "result": "accepted",
        },
    ]
    assert rows[1][2]["mailerq"]["recipient"] == "rcpt@dest.test"
    assert rows[1][2]["kind"] == "success"


def test_outcomes_of_one_recipient_in_one_batch_read_as_in_two(store: Store) -> None:
    """Two attempts of one recipient recorded in one transaction give the events that
    two transactions give: the second counts the first (is_retry) and carries its result,
    after what the message's MailerQ JSON already held."""
    document = {"document": {"envelope": "mq@src.test", "results": [{"code": 421}]}}
    payloads = []
    for together in (False, True):  # apart first: its claim must find only its own
        spool = SqlSpool(store, f"node-{together}", event_subscriptions=[HTTP])
        qid = f"Q{together}"
        (job,) = spool.accept([message(qid, ["r@dest.test"], mq_options=document)], T0 + 300)
        first = outcome(job.recipient_id, qid, QUEUED, "451 4.7.1 later", T0 + 1)
        second = outcome(job.recipient_id, qid, DELIVERED, "250 2.0.0 ok", T0 + 2)
        if together:
            spool.record([first, second])
        else:
            spool.record([first])
            assert len(spool.claim_due(T0 + 61, 10, T0 + 400)) == 1
            spool.record([second])
        own = [payload for _, _, payload, _ in stored(store) if qid in str(payload)]
        payloads.append(json.loads(json.dumps(own).replace(qid, "Q")))
    apart_payloads, together_payloads = payloads
    assert together_payloads == apart_payloads
    last = together_payloads[-1]
    assert last["greenarrow"]["is_retry"] == 1
    assert last["greenarrow"]["sendid"] == "send-42"
    assert [r["code"] for r in last["mailerq"]["results"]] == [421, 451, 250]
    assert last["mailerq"]["envelope"] == "mq@src.test"


def test_failure_adds_bounce_all_for_the_destinations_that_want_it(store: Store) -> None:
    spool = SqlSpool(store, "a", event_subscriptions=[HTTP, AMQP])
    (job,) = spool.accept([message("Q1", ["gone@dest.test"])], T0 + 300)
    spool.record([outcome(job.recipient_id, "Q1", FAILED, "550 5.1.1 No such user", T0 + 1)])

    rows = stored(store)
    assert [(t, d) for _, t, _, d in rows] == [
        (DELIVERY_ATTEMPT, ["http", "rabbitmq"]),
        (BOUNCE_ALL, ["http"]),
    ]
    bounce = greenarrow_event(rows[1][0], rows[1][2])
    assert bounce["bounce_type"] == "h" and bounce["bounce_code"] == 10
    assert bounce["synchronous"] is True
    assert bounce["bounce_text"] == "550 5.1.1 No such user"
    assert bounce["email"] == "gone@dest.test" and bounce["sendid"] == "send-42"
    assert greenarrow_event(rows[0][0], rows[0][2])["status"] == "failure"


def test_no_subscription_writes_nothing_and_a_bounce_message_gets_no_bounce_all(
    store: Store,
) -> None:
    quiet = SqlSpool(store, "a")
    (job,) = quiet.accept([message("Q1", ["x@dest.test"])], T0 + 300)
    quiet.record([outcome(job.recipient_id, "Q1", FAILED, "550 5.1.1 no", T0 + 1)])
    assert stored(store) == []

    spool = SqlSpool(store, "a", event_subscriptions=[HTTP])
    (dsn,) = spool.accept([message("Q2", ["s@src.test"], mail_from="", is_bounce=True)], T0 + 300)
    spool.record([outcome(dsn.recipient_id, "Q2", FAILED, "550 5.1.1 no", T0 + 2)])
    assert [t for _, t, _, _ in stored(store)] == [DELIVERY_ATTEMPT]


def test_an_outcome_not_applied_writes_no_event(store: Store) -> None:
    """The recipient's lease passed to another node: the outcome changes nothing, and no
    event is invented for it."""
    spool = SqlSpool(store, "a", event_subscriptions=[HTTP])
    spool.accept([message("Q1", ["r@dest.test"])], lease_until=None)
    other = SqlSpool(store, "b", event_subscriptions=[HTTP])
    (job,) = other.claim_due(T0 + 1, 10, T0 + 300)
    spool.record([outcome(job.recipient_id, "Q1", DELIVERED, "250 ok", T0 + 2)])
    assert stored(store) == []


def test_a_failed_transaction_writes_neither_outcome_nor_event(store: Store) -> None:
    spool = SqlSpool(store, "a", event_subscriptions=[HTTP])
    (job,) = spool.accept([message("Q1", ["r@dest.test"])], T0 + 300)
    broken = outcome(job.recipient_id, "Q1", DELIVERED, "250 ok", T0 + 1)
    # An attempt record the database refuses (NOT NULL outcome label) fails the batch.
    with pytest.raises(Exception):  # noqa: B017 - the driver's own error class
        spool.record([broken, Outcome(job.recipient_id, None, T0 + 1, DELIVERED)])  # type: ignore[arg-type]
    assert stored(store) == []
    view = spool.inspector.message("Q1")
    assert view is not None and view.recipients[0]["state"] == QUEUED


def test_claim_acknowledge_and_status(store: Store) -> None:
    spool = SqlSpool(store, "a", event_subscriptions=[HTTP, AMQP])
    jobs = spool.accept([message(f"Q{i}", ["r@dest.test"]) for i in range(3)], T0 + 300)
    spool.record([outcome(j.recipient_id, j.message_id, DELIVERED, "250 ok", T0 + 5) for j in jobs])
    outbox = EventOutbox(store, "a")
    claimed = outbox.claim("http", 2, T0 + 10, T0 + 70)
    assert [e.event_type for e in claimed] == [DELIVERY_ATTEMPT] * 2
    # Another node sees only what is not claimed.
    assert len(EventOutbox(store, "b").claim("http", 10, T0 + 10, T0 + 70)) == 1
    status = {s.name: s for s in outbox.status(T0 + 10)}
    assert (status["http"].backlog, status["http"].in_flight) == (3, 3)
    assert status["http"].oldest_created_at == T0 + 5
    assert (status["rabbitmq"].backlog, status["rabbitmq"].in_flight) == (3, 0)

    outbox.acknowledge("http", [e.id for e in claimed], T0 + 11)
    outbox.note_error("rabbitmq", "connection refused", T0 + 12)
    status = {s.name: s for s in outbox.status(T0 + 12)}
    assert status["http"].backlog == 1 and status["http"].last_success_at == T0 + 11
    assert status["rabbitmq"].last_error == "connection refused"
    # Events stay while a destination still wants them, and go when none does.
    with store.read() as conn:
        assert conn.execute(select(func.count()).select_from(events)).scalar() == 3
    outbox.acknowledge("rabbitmq", [e.id for e in claimed], T0 + 13)
    with store.read() as conn:
        assert conn.execute(select(func.count()).select_from(events)).scalar() == 1


def test_own_claims_are_released_and_counted_at_start_up(store: Store) -> None:
    spool = SqlSpool(store, "a", event_subscriptions=[HTTP])
    jobs = spool.accept([message(f"Q{i}", ["r@dest.test"]) for i in range(2)], T0 + 300)
    spool.record([outcome(j.recipient_id, j.message_id, DELIVERED, "250 ok", T0 + 5) for j in jobs])
    EventOutbox(store, "a").claim("http", 10, T0 + 10, T0 + 1000)
    restarted = EventOutbox(store, "a")
    assert restarted.release_own() == 2
    assert len(EventOutbox(store, "b").claim("http", 10, T0 + 11, T0 + 70)) == 2
