"""Outcomes recorded in one batch (executemany per run of outcomes of the same shape) land
exactly as one at a time would: each recipient its own values, in order, only under this
node's lease, routing memory per message. On SQLite and PostgreSQL."""

from __future__ import annotations

from vmta.domain.attempts.spool_records import DELIVERED, QUEUED, NewMessage, Outcome
from vmta.store.spool import SqlSpool
from vmta.store.store import Store
from vmta.store.tables import messages

T0 = 1_700_000_000.0


def message(qid: str, count: int) -> NewMessage:
    return NewMessage(
        id=qid,
        received_at=T0,
        expires_at=T0 + 3600,
        mail_from="sender@example.com",
        recipients=[f"r{i}@x.test" for i in range(count)],
        body=b"Subject: hi\r\n\r\nbody\r\n",
    )


def test_mixed_batch_sets_every_recipient_its_own_values(store: Store) -> None:
    spool = SqlSpool(store, "a")
    jobs = spool.accept([message("Q1", 40)], T0 + 300)
    outcomes = []
    for i, job in enumerate(jobs):
        kind = i % 4
        if kind == 0:
            outcomes.append(
                Outcome(
                    job.recipient_id,
                    "Q1",
                    T0 + i,
                    DELIVERED,
                    reply=f"250 ok {i}",
                    virtual_mta=f"v{i}",
                    outcome_label="delivered",
                )
            )
        elif kind == 1:
            outcomes.append(
                Outcome(
                    job.recipient_id,
                    "Q1",
                    T0 + i,
                    QUEUED,
                    next_attempt_at=T0 + 1000 + i,
                    reply=f"451 later {i}",
                    outcome_label="deferred",
                )
            )
        elif kind == 2:  # waiting: no connection was tried, so not an attempt
            outcomes.append(
                Outcome(
                    job.recipient_id,
                    "Q1",
                    T0 + i,
                    QUEUED,
                    next_attempt_at=T0 + 2000 + i,
                    reply=f"paused {i}",
                    attempted=False,
                    waiting_reason=f"paused {i}",
                )
            )
        else:
            outcomes.append(
                Outcome(
                    job.recipient_id,
                    "Q1",
                    T0 + i,
                    DELIVERED,
                    reply=f"250 ok {i}",
                    routing_memory={"rule": i},
                    outcome_label="delivered",
                )
            )
    spool.record(outcomes)
    view = spool.inspector.message("Q1")
    assert view is not None
    for i, row in enumerate(view.recipients):
        kind = i % 4
        assert row["address"] == f"r{i}@x.test"
        assert row["in_flight"] is False
        if kind == 0:
            assert (row["state"], row["attempts"], row["last_reply"], row["virtual_mta"]) == (
                DELIVERED,
                1,
                f"250 ok {i}",
                f"v{i}",
            )
        elif kind == 1:
            assert (row["state"], row["attempts"], row["next_attempt_at"]) == (
                QUEUED,
                1,
                T0 + 1000 + i,
            )
        elif kind == 2:
            assert (row["state"], row["attempts"], row["waiting_reason"], row["last_reply"]) == (
                QUEUED,
                0,
                f"paused {i}",
                f"paused {i}",
            )
            assert row["next_attempt_at"] == T0 + 2000 + i
        else:
            assert (row["state"], row["attempts"]) == (DELIVERED, 1)
    # One attempt row per attempted outcome, in order; the waiting ones are not attempts.
    assert [a["recipient_id"] for a in view.attempts] == [
        o.recipient_id for o in outcomes if o.attempted
    ]
    # The last routing memory written for the message wins, as it did one at a time.
    with store.read() as conn:
        memory = conn.execute(messages.select().where(messages.c.id == "Q1")).one().routing_memory
    assert memory == {"rule": 39}


def test_outcomes_for_one_recipient_apply_in_order(store: Store) -> None:
    spool = SqlSpool(store, "a")
    (job,) = spool.accept([message("Q1", 1)], T0 + 300)
    spool.record(
        [
            Outcome(
                job.recipient_id,
                "Q1",
                T0 + 1,
                QUEUED,
                next_attempt_at=T0 + 100,
                reply="waiting",
                attempted=False,
                waiting_reason="waiting",
            ),
            Outcome(
                job.recipient_id,
                "Q1",
                T0 + 2,
                QUEUED,
                next_attempt_at=T0 + 200,
                reply="451 later",
                outcome_label="deferred",
            ),
        ]
    )
    view = spool.inspector.message("Q1")
    assert view is not None
    (row,) = view.recipients
    # The first outcome released the lease, so the second (same node) no longer matches:
    # exactly what applying them one by one did.
    assert (row["waiting_reason"], row["attempts"], row["next_attempt_at"]) == (
        "waiting",
        0,
        T0 + 100,
    )


def test_outcome_does_not_touch_a_recipient_leased_by_another_node(store: Store) -> None:
    mine, other = SqlSpool(store, "a"), SqlSpool(store, "b")
    (job,) = mine.accept([message("Q1", 1)], T0 + 10)
    assert len(other.claim_due(T0 + 11, 10, T0 + 400)) == 1  # a's lease expired; b took it
    mine.record([Outcome(job.recipient_id, "Q1", T0 + 12, DELIVERED, reply="250 late")])
    view = mine.inspector.message("Q1")
    assert view is not None
    assert view.recipients[0]["state"] == QUEUED and view.recipients[0]["in_flight"] is True
