"""Leases timed by the database's clock (PostgreSQL), so that nodes whose clocks disagree
never take each other's work early; SQLite (one machine) keeps the caller's clock. And one
purge at a time per cluster on PostgreSQL."""

from __future__ import annotations

import time

from sqlalchemy import ColumnElement, Connection, create_engine, func, literal, select

from tests.store.test_spool import message
from vmta.domain.attempts.spool_records import DELIVERED, Outcome
from vmta.store.db_clock import database_now
from vmta.store.event_outbox import EventOutbox
from vmta.store.spool import SqlSpool
from vmta.store.store import Store
from vmta.store.tables import event_deliveries, recipients

HOUR = 3600.0
LEASE = 300.0


def lease_untils(store: Store) -> list[float]:
    with store.read() as conn:
        return [float(v) for v in conn.execute(select(recipients.c.lease_until)).scalars()]


def db_now(store: Store) -> float:
    with store.read() as conn:
        return database_now(conn)


def test_a_node_with_a_fast_clock_does_not_take_a_live_lease(store: Store) -> None:
    now = time.time()
    mine = SqlSpool(store, "a", db_lease_seconds=LEASE)
    fast = SqlSpool(store, "b", db_lease_seconds=LEASE)
    mine.accept([message("Q1", ["r@x.test"], at=now)], lease_until=now + LEASE)
    mine.release_own_leases(now)
    assert len(mine.claim_due(now, 10, now + LEASE)) == 1

    # b's clock is an hour ahead: by its clock a's lease ended long ago.
    taken = fast.claim_due(now + HOUR, 10, now + HOUR + LEASE)

    if store.dialect == "postgresql":
        assert taken == []  # by the database's clock the lease has minutes to run
    else:
        assert len(taken) == 1  # SQLite: one machine, the caller's clock (documented)


def test_a_node_with_a_slow_clock_writes_leases_that_are_not_already_over(
    store: Store,
) -> None:
    now = time.time()
    slow = SqlSpool(store, "a", db_lease_seconds=LEASE)
    other = SqlSpool(store, "b", db_lease_seconds=LEASE)
    slow.accept([message("Q1", ["r@x.test"], at=now - HOUR)], lease_until=None)
    # a's clock is an hour behind: the lease it asks for ended 55 minutes ago.
    assert len(slow.claim_due(now - HOUR, 10, now - HOUR + LEASE)) == 1

    taken = other.claim_due(now, 10, now + LEASE)

    if store.dialect == "postgresql":
        assert taken == []
        [until] = lease_untils(store)
        assert LEASE - 60 < until - db_now(store) <= LEASE
    else:
        assert len(taken) == 1


def test_accept_and_renew_lease_by_the_database_clock(store: Store) -> None:
    spool = SqlSpool(store, "a", db_lease_seconds=LEASE)
    far_past = 1_000_000_000.0  # the caller's clock, wildly off
    spool.accept([message("Q1", ["r@x.test"], at=far_past)], lease_until=far_past + 10)
    [accepted] = lease_untils(store)
    spool.renew_leases(far_past + 20)
    [renewed] = lease_untils(store)
    if store.dialect == "postgresql":
        assert LEASE - 60 < accepted - db_now(store) <= LEASE
        assert renewed >= accepted
    else:
        assert (accepted, renewed) == (far_past + 10, far_past + 20)


def test_an_expired_database_lease_is_taken_by_another_node(pg_url: str) -> None:
    store = Store.open(pg_url)
    try:
        short = 0.2
        dead = SqlSpool(store, "dead", db_lease_seconds=short)
        alive = SqlSpool(store, "alive", db_lease_seconds=LEASE)
        now = time.time()
        dead.accept([message("Q1", ["r@x.test"], at=now)], lease_until=now + short)
        deadline = time.monotonic() + 10
        taken: list[object] = []
        while not taken:
            assert time.monotonic() < deadline, "the dead node's lease never ended"
            taken.extend(alive.claim_due(time.time(), 10, time.time() + LEASE))
            time.sleep(0.05)
        assert len(taken) == 1
    finally:
        store.close()


def finished_message(spool: SqlSpool, qid: str) -> None:
    [job] = spool.accept([message(qid, ["r@x.test"], at=1000.0)], lease_until=2000.0)
    spool.record(
        [
            Outcome(
                recipient_id=job.recipient_id,
                message_id=job.message_id,
                at=1001.0,
                state=DELIVERED,
                reply="250 ok",
            )
        ]
    )


def hold_purge_lock(conn: Connection, schema_expr: ColumnElement[str]) -> None:
    lock = func.hashtext(func.concat(schema_expr, ".vmta.purge"))
    assert conn.execute(select(func.pg_try_advisory_xact_lock(lock))).scalar_one() is True


def test_one_purge_at_a_time_on_postgresql(pg_url: str) -> None:
    store = Store.open(pg_url)
    holder = create_engine(pg_url)
    try:
        spool = SqlSpool(store, "a")
        finished_message(spool, "Q1")
        with holder.connect() as conn, conn.begin():
            # Another node's purge, in progress: it holds the purge lock of this schema.
            hold_purge_lock(conn, func.current_schema())
            assert spool.purge_finished(before=5000.0) == 0
            assert spool.inspector.message("Q1") is not None  # left to the purge that runs
        assert spool.purge_finished(before=5000.0) == 1
        assert spool.inspector.message("Q1") is None
    finally:
        holder.dispose()
        store.close()


def test_a_purge_in_another_schema_does_not_hold_this_one_back(pg_url: str) -> None:
    """One PostgreSQL database, two clusters (one per schema): each purges on its own."""
    store = Store.open(pg_url)
    holder = create_engine(pg_url)
    try:
        spool = SqlSpool(store, "a")
        finished_message(spool, "Q1")
        with holder.connect() as conn, conn.begin():
            hold_purge_lock(conn, literal("some_other_schema"))
            assert spool.purge_finished(before=5000.0) == 1
    finally:
        holder.dispose()
        store.close()


# ---- event deliveries: the same lease rule (store/db_clock.LeaseClock) ---------------


def one_event(store: Store, now: float) -> None:
    from tests.store.test_event_outbox import HTTP, outcome
    from tests.store.test_event_outbox import message as event_message

    spool = SqlSpool(store, "writer", event_subscriptions=[HTTP])
    (job,) = spool.accept([event_message("E1", ["r@x.test"], received_at=now)], now + LEASE)
    spool.record([outcome(job.recipient_id, "E1", DELIVERED, "250 2.0.0 ok", now)])


def event_lease_untils(store: Store) -> list[float]:
    with store.read() as conn:
        column = event_deliveries.c.lease_until
        return [float(v) for v in conn.execute(select(column)).scalars()]


def test_event_claims_are_timed_by_the_database_clock_too(store: Store) -> None:
    now = time.time()
    one_event(store, now)
    mine = EventOutbox(store, "a", db_lease_seconds=LEASE)
    fast = EventOutbox(store, "b", db_lease_seconds=LEASE)
    assert len(mine.claim("http", 10, now, now + LEASE)) == 1

    # b's clock is an hour ahead: by its clock a's claim ended long ago.
    assert fast.has_due("http", now + HOUR) is (store.dialect != "postgresql")
    taken = fast.claim("http", 10, now + HOUR, now + HOUR + LEASE)
    if store.dialect == "postgresql":
        assert taken == []  # by the database's clock the claim has minutes to run
        (status,) = fast.status(now + HOUR)
        assert status.in_flight == 1
    else:
        assert len(taken) == 1  # SQLite: one machine, the caller's clock (documented)


def test_an_event_claim_by_a_slow_clock_is_not_already_over(store: Store) -> None:
    now = time.time()
    one_event(store, now)
    slow = EventOutbox(store, "a", db_lease_seconds=LEASE)
    other = EventOutbox(store, "b", db_lease_seconds=LEASE)
    # a's clock is an hour behind: the claim it asks for ended 55 minutes ago.
    assert len(slow.claim("http", 10, now - HOUR, now - HOUR + LEASE)) == 1

    taken = other.claim("http", 10, now, now + LEASE)

    if store.dialect == "postgresql":
        assert taken == []
        [until] = event_lease_untils(store)
        assert LEASE - 60 < until - db_now(store) <= LEASE
    else:
        assert len(taken) == 1
