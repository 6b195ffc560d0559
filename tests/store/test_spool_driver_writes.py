"""The spool's accept and record run as the driver's own statements (store/spool_writes.py):
what they write reads back through the Core queries, many rows per statement split at the
statement bound, and driver errors reach callers as the store's errors."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from tests.conftest import cap_sqlite_growth
from vmta.domain.attempts.spool_records import DELIVERED, QUEUED, NewMessage, Outcome
from vmta.store.database import DatabaseUnavailable, InvalidDatabaseUrl, require_sqlite
from vmta.store.spool import SqlSpool
from vmta.store.spool_writes import ROWS_PER_STATEMENT
from vmta.store.store import Store
from vmta.store.tables import attempts, messages, recipients

T0 = 1_700_000_000.0


def message(qid: str, rcpts: list[str], **extra: Any) -> NewMessage:
    return NewMessage(
        id=qid,
        received_at=T0,
        expires_at=T0 + 3600,
        mail_from="sender@example.com",
        recipients=rcpts,
        body=b"Subject: hi\r\n\r\n" + qid.encode() + b"\r\n",
        **extra,
    )


def counts(store: Store) -> tuple[int, int, int]:
    with store.read() as conn:
        return tuple(  # type: ignore[return-value]
            int(conn.execute(select(func.count()).select_from(t)).scalar_one())
            for t in (messages, recipients, attempts)
        )


def test_a_batch_over_the_statement_bound_is_stored_whole(store: Store) -> None:
    spool = SqlSpool(store, "node-a")
    batch = [message(f"Q{i}", [f"a{i}@x.test", f"b{i}@x.test"]) for i in range(300)]
    assert 2 * len(batch) > ROWS_PER_STATEMENT  # recipients take two statements
    jobs = spool.accept(batch, lease_until=T0 + 300)
    assert counts(store) == (300, 600, 0)
    assert [j.recipient_id for j in jobs] == sorted(j.recipient_id for j in jobs)
    assert {(j.message_id, j.address) for j in jobs} == {
        (m.id, a) for m in batch for a in m.recipients
    }
    with store.read() as conn:
        stored = {
            row.id: row.message_id
            for row in conn.execute(select(recipients.c.id, recipients.c.message_id))
        }
    assert all(stored[j.recipient_id] == j.message_id for j in jobs)
    assert spool.body("Q299") == b"Subject: hi\r\n\r\nQ299\r\n"


def test_one_address_twice_gets_two_recipients(store: Store) -> None:
    spool = SqlSpool(store, "node-a")
    jobs = spool.accept([message("Q1", ["a@x.test", "a@x.test"])], lease_until=T0 + 300)
    assert len({j.recipient_id for j in jobs}) == 2
    assert [j.address for j in jobs] == ["a@x.test", "a@x.test"]


def test_json_columns_and_unclaimed_messages_read_back(store: Store) -> None:
    spool = SqlSpool(store, "node-a")
    options = {"pool": "p1", "tags": ["a", "b"], "maxattempts": 3}
    claimed = message("Q1", ["a@x.test"], kept_headers={"X-Id": "7"}, mq_options=options)
    jobs = spool.accept(
        [claimed, message("Q2", ["b@x.test"], is_bounce=True, kept_headers={}, mq_options={})],
        lease_until=T0 + 300,
        unclaimed={"Q2"},
    )
    assert [j.message_id for j in jobs] == ["Q1"]
    assert jobs[0].mq_options == options and not jobs[0].is_bounce
    with store.read() as conn:
        rows = {r.id: r for r in conn.execute(select(messages))}
    assert rows["Q1"].kept_headers == {"X-Id": "7"} and rows["Q1"].mq_options == options
    assert rows["Q2"].kept_headers is None and rows["Q2"].mq_options is None  # empty: NULL
    assert bool(rows["Q2"].is_bounce) and rows["Q1"].size == len(claimed.body)
    # The unclaimed message waits for any node's poll, with what the claimed one had.
    polled = SqlSpool(store, "node-b").claim_due(T0, 10, T0 + 300)
    assert [(j.message_id, j.is_bounce, j.attempts) for j in polled] == [("Q2", True, 0)]


def test_outcomes_of_a_deleted_message_change_nothing(store: Store) -> None:
    spool = SqlSpool(store, "node-a")
    jobs = spool.accept(
        [message("Q1", ["a@x.test"]), message("Q2", ["b@x.test"])], lease_until=T0 + 300
    )
    assert spool.housekeeping.delete_message("Q2")
    outcomes = [
        Outcome(j.recipient_id, j.message_id, T0 + 1, DELIVERED, reply="250 ok") for j in jobs
    ]
    spool.record(outcomes)
    assert counts(store) == (1, 1, 1)
    with store.read() as conn:
        row = conn.execute(select(recipients)).one()
    assert (row.state, row.attempts, row.last_reply) == (DELIVERED, 1, "250 ok")


def test_an_outcome_after_the_lease_ended_leaves_the_recipient_alone(store: Store) -> None:
    spool = SqlSpool(store, "node-a")
    [job] = spool.accept([message("Q1", ["a@x.test"])], lease_until=T0 + 300)
    first = Outcome(job.recipient_id, "Q1", T0 + 1, QUEUED, T0 + 60, "451 later", True)
    late = Outcome(job.recipient_id, "Q1", T0 + 2, DELIVERED, reply="250 ok")
    spool.record([first, late])  # the first gives the lease back: the second is not ours
    with store.read() as conn:
        row = conn.execute(select(recipients)).one()
    assert (row.state, row.attempts, row.last_reply, row.lease_owner) == (
        QUEUED,
        1,
        "451 later",
        None,
    )


def test_a_message_id_stored_twice_is_the_stores_integrity_error(store: Store) -> None:
    spool = SqlSpool(store, "node-a")
    spool.accept([message("Q1", ["a@x.test"])], lease_until=None)
    with pytest.raises(IntegrityError):
        spool.accept([message("Q2", ["b@x.test"]), message("Q1", ["c@x.test"])], None)
    assert counts(store) == (1, 1, 0)  # the failed batch left nothing behind


@pytest.mark.one_database
def test_a_full_sqlite_spool_is_unavailable_and_keeps_nothing(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'vmta.db'}")
    cap_sqlite_growth(store)
    try:
        spool = SqlSpool(store, "node-a")
        big = NewMessage("Q1", T0, T0 + 3600, "s@x.test", ["a@x.test"], b"x" * 200_000)
        with pytest.raises(DatabaseUnavailable, match="full"):
            spool.accept([big], lease_until=T0 + 300)
        assert counts(store) == (0, 0, 0)
        spool.accept([message("Q2", ["b@x.test"])], lease_until=None)  # a small one fits
        assert counts(store) == (1, 1, 0)
    finally:
        store.close()


@pytest.mark.one_database
def test_an_old_sqlite_library_is_refused_by_name() -> None:
    with pytest.raises(InvalidDatabaseUrl, match=r"SQLite 3\.35\.0 or later .* SQLite 3\.34\.1"):
        require_sqlite((3, 34, 1))
    require_sqlite((3, 35, 0))
    require_sqlite(sqlite3.sqlite_version_info)  # this machine's, which runs the suite
