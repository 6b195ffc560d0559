"""The spool on SQLite and PostgreSQL: accept, claim with leases, outcomes, recovery."""

from __future__ import annotations

import threading

from sqlalchemy import select

from vmta.domain.attempts.spool_records import DELIVERED, FAILED, QUEUED, NewMessage, Outcome
from vmta.domain.message.wire_form import WIRE, to_wire, unstuffed
from vmta.store.spool import SqlSpool
from vmta.store.store import Store
from vmta.store.tables import messages

T0 = 1_700_000_000.0


def message(qid: str, rcpts: list[str], at: float = T0) -> NewMessage:
    return NewMessage(
        id=qid,
        received_at=at,
        expires_at=at + 3600,
        mail_from="sender@example.com",
        recipients=rcpts,
        body=b"Subject: hi\r\n\r\nbody\r\n",
        vmta_selector="relay-1",
        client_ip="127.0.0.1",
    )


def test_accept_with_lease_returns_jobs_and_hides_them_from_polls(store: Store) -> None:
    spool = SqlSpool(store, "node-a")
    jobs = spool.accept([message("Q1", ["a@x.test", "b@x.test"])], lease_until=T0 + 300)
    assert [j.address for j in jobs] == ["a@x.test", "b@x.test"]
    assert all(j.message_id == "Q1" and j.vmta_selector == "relay-1" for j in jobs)
    assert spool.claim_due(T0 + 1, 100, T0 + 301) == []  # leased by node-a
    other = SqlSpool(store, "node-b")
    assert other.claim_due(T0 + 1, 100, T0 + 400) == []
    # After the lease expires, another node may take the work.
    assert len(other.claim_due(T0 + 301, 100, T0 + 700)) == 2


def test_claims_never_overlap(store: Store) -> None:
    """Four nodes claim at the same moment (threads released together by a barrier), in
    rounds, until nothing is left: every recipient is claimed by exactly one of them."""
    nodes = [SqlSpool(store, f"node-{n}") for n in range(4)]
    nodes[0].accept([message(f"Q{i}", ["r@x.test"]) for i in range(60)], lease_until=None)
    barrier = threading.Barrier(len(nodes))
    claimed: dict[str, list[int]] = {spool.owner: [] for spool in nodes}
    failures: list[BaseException] = []

    def claim(spool: SqlSpool) -> None:
        try:
            for _ in range(8):  # rounds; 4 nodes x 8 rounds x 3 claims > 60
                barrier.wait(timeout=30)
                jobs = spool.claim_due(T0, 3, T0 + 300)
                claimed[spool.owner].extend(job.recipient_id for job in jobs)
        except BaseException as exc:
            failures.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=claim, args=(spool,)) for spool in nodes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    every = [rid for ids in claimed.values() for rid in ids]
    assert len(every) == 60 and len(set(every)) == 60  # each one once, none twice
    with store.read() as conn:
        owners = conn.exec_driver_sql("select id, lease_owner from recipients").all()
    assert {rid: owner for rid, owner in owners} == {
        rid: owner for owner, ids in claimed.items() for rid in ids
    }


def test_outcomes_and_attempt_records(store: Store) -> None:
    spool = SqlSpool(store, "a")
    jobs = spool.accept([message("Q1", ["a@x.test", "b@x.test", "c@x.test"])], T0 + 300)
    a, b, c = jobs
    spool.record(
        [
            Outcome(
                a.recipient_id,
                "Q1",
                T0 + 1,
                DELIVERED,
                reply="250 ok",
                outcome_label="delivered",
                source_ip="127.0.0.2",
                remote_host="sink",
                virtual_mta="relay-1",
            ),
            Outcome(
                b.recipient_id,
                "Q1",
                T0 + 1,
                QUEUED,
                next_attempt_at=T0 + 61,
                reply="451 later",
                outcome_label="deferred",
            ),
            Outcome(c.recipient_id, "Q1", T0 + 1, FAILED, reply="550 no", outcome_label="failed"),
        ]
    )
    view = spool.inspector.message("Q1")
    assert view is not None
    states = {r["address"]: (r["state"], r["attempts"], r["in_flight"]) for r in view.recipients}
    assert states == {
        "a@x.test": ("delivered", 1, False),
        "b@x.test": ("queued", 1, False),
        "c@x.test": ("failed", 1, False),
    }
    assert [a["outcome"] for a in view.attempts] == ["delivered", "deferred", "failed"]
    assert view.attempts[0]["source_ip"] == "127.0.0.2"
    # The deferred one comes back when due, not before.
    assert spool.claim_due(T0 + 60, 10, T0 + 400) == []
    again = spool.claim_due(T0 + 61, 10, T0 + 400)
    assert [j.address for j in again] == ["b@x.test"] and again[0].attempts == 1


def test_release_own_leases_counts_unfinished(store: Store) -> None:
    spool = SqlSpool(store, "a")
    spool.accept([message("Q1", ["a@x.test"]), message("Q2", ["b@x.test"])], T0 + 300)
    assert spool.release_own_leases(T0 + 5) == 2
    assert len(spool.claim_due(T0 + 5, 10, T0 + 300)) == 2


def test_retry_now_delete_and_counts(store: Store) -> None:
    spool = SqlSpool(store, "a")
    jobs = spool.accept([message("Q1", ["a@x.test"]), message("Q2", ["b@x.test"])], T0 + 300)
    spool.record(
        [
            Outcome(
                jobs[0].recipient_id,
                "Q1",
                T0,
                QUEUED,
                next_attempt_at=T0 + 999,
                reply="451",
                outcome_label="deferred",
            )
        ]
    )
    assert spool.housekeeping.retry_now("Q1", T0 + 1) == 1
    assert [j.message_id for j in spool.claim_due(T0 + 1, 10, T0 + 300)] == ["Q1"]
    assert spool.housekeeping.delete_message("Q2") is True
    assert spool.housekeeping.delete_message("Q2") is False
    assert spool.inspector.message("Q2") is None
    counts = spool.inspector.counts()
    assert sum(c["n"] for c in counts) == 1


def test_body_round_trip_is_byte_exact(store: Store) -> None:
    """A body in wire form comes back as it went in; one given as it is, in wire form
    (domain/message/wire_form.py)."""
    spool = SqlSpool(store, "a")
    given = bytes(range(256)) * 400  # bare CRs and LFs, lines starting with "."
    wire = to_wire(given)
    spool.accept([NewMessage("Q1", T0, T0 + 1, "", ["a@x.test"], wire, wire_form=True)], None)
    spool.accept([NewMessage("Q2", T0, T0 + 1, "", ["a@x.test"], given)], None)
    assert spool.body("Q1") == wire and spool.body("Q2") == wire
    assert wire != given and unstuffed(wire).startswith(b"\x00\x01")
    with store.read() as conn:
        rows = conn.execute(select(messages.c.size, messages.c.body_format)).all()
    assert [tuple(row) for row in rows] == [(len(wire), WIRE)] * 2


def test_purge_removes_only_finished_messages_past_retention(store: Store) -> None:
    spool = SqlSpool(store, "a")
    old = spool.accept([message("OLD", ["a@x.test", "b@x.test"], at=T0)], T0 + 300)
    pending = spool.accept([message("PENDING", ["c@x.test"], at=T0)], T0 + 300)
    spool.accept([message("NEW", ["d@x.test"], at=T0 + 500)], None)
    spool.record(
        [
            Outcome(old[0].recipient_id, "OLD", T0 + 1, DELIVERED, outcome_label="delivered"),
            Outcome(old[1].recipient_id, "OLD", T0 + 1, FAILED, outcome_label="failed"),
        ]
    )
    assert pending  # still queued: kept whatever its age
    assert spool.purge_finished(before=T0 + 100, limit=10) == 1
    assert spool.inspector.message("OLD") is None
    assert (
        spool.inspector.message("PENDING") is not None
        and spool.inspector.message("NEW") is not None
    )
    assert spool.purge_finished(before=T0 + 100, limit=10) == 0
