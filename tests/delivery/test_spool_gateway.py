"""The spool gateway's writer cycles (delivery/engine/spool_gateway.py) on a real store, SQLite and
PostgreSQL: accepts and outcomes that arrive together share one transaction (one commit);
an outcome the store refuses fails only its own caller, never the accepts of its cycle nor
the other outcomes."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from sqlalchemy import event, select

from vmta.delivery.engine.spool_gateway import SpoolGateway
from vmta.domain.attempts.spool_records import DELIVERED, NewMessage, Outcome
from vmta.store.database import DatabaseUnavailable
from vmta.store.spool import SqlSpool
from vmta.store.store import Store
from vmta.store.tables import recipients

NOW = 1_700_000_000.0


def new_message(n: int) -> NewMessage:
    return NewMessage(
        id=f"M{n:04d}",
        received_at=NOW,
        expires_at=NOW + 86400,
        mail_from="s@src.test",
        recipients=[f"r{n}@dest.test"],
        body=b"Subject: x\r\n\r\nbody\r\n",
    )


def delivered(job: Any, message_id: str | None = None) -> Outcome:
    return Outcome(
        recipient_id=job.recipient_id,
        message_id=message_id or job.message_id,
        at=NOW + 1,
        state=DELIVERED,
        reply="250 ok",
        outcome_label="delivered",
    )


def commits(store: Store) -> list[int]:
    seen: list[int] = []
    event.listen(store.engine, "commit", lambda _conn: seen.append(1))
    return seen


def states(store: Store) -> dict[str, str]:
    with store.read() as conn:
        rows = conn.execute(select(recipients.c.address, recipients.c.state))
        return {address: state for address, state in rows}


async def test_accepts_and_outcomes_of_one_cycle_share_one_commit(store: Store) -> None:
    gateway = SpoolGateway(SqlSpool(store, "node-a"), lease_seconds=300)
    gateway.start()
    try:
        first = await asyncio.gather(*(gateway.accept(new_message(n), NOW) for n in range(5)))
        seen = commits(store)
        # Submitted in one go: they wait for the same writer cycle.
        await asyncio.gather(
            *(gateway.accept(new_message(n), NOW) for n in range(5, 10)),
            *(gateway.record(delivered(jobs[0])) for jobs in first),
        )
        assert len(seen) == 1
        assert gateway.commit_stats["writes"] == 15
    finally:
        await gateway.stop()
    now = states(store)
    assert [now[f"r{n}@dest.test"] for n in range(10)] == ["delivered"] * 5 + ["queued"] * 5


async def test_a_refused_outcome_fails_only_its_own_caller(store: Store) -> None:
    gateway = SpoolGateway(SqlSpool(store, "node-a"), lease_seconds=300)
    gateway.start()
    try:
        first = await asyncio.gather(*(gateway.accept(new_message(n), NOW) for n in range(3)))
        # An attempt row naming a message that does not exist breaks a foreign key.
        refused = delivered(first[0][0], message_id="NO-SUCH-MESSAGE")
        results = await asyncio.gather(
            gateway.accept(new_message(7), NOW),
            gateway.record(refused),
            gateway.record(delivered(first[1][0])),
            gateway.accept(new_message(8), NOW),
            gateway.record(delivered(first[2][0])),
            return_exceptions=True,
        )
    finally:
        await gateway.stop()
    accepted_7, problem, ok_1, accepted_8, ok_2 = results
    assert isinstance(problem, Exception), results
    assert ok_1 is None and ok_2 is None
    assert isinstance(accepted_7, list) and len(accepted_7) == 1
    assert isinstance(accepted_8, list) and len(accepted_8) == 1
    now = states(store)
    assert now["r0@dest.test"] == "queued"  # its outcome was refused: nothing changed
    assert now["r1@dest.test"] == now["r2@dest.test"] == "delivered"
    assert now["r7@dest.test"] == now["r8@dest.test"] == "queued"


async def test_body_reads_waiting_together_share_one_query(store: Store) -> None:
    spool = SqlSpool(store, "node-a")
    gateway = SpoolGateway(spool, lease_seconds=300)
    gateway.start()
    try:
        messages = [new_message(n) for n in range(20)]
        await asyncio.gather(*(gateway.accept(m, NOW) for m in messages))
        assert spool.housekeeping.delete_message("M0003")
        ids = [m.id for m in messages] + ["M0005", "NO-SUCH-MESSAGE"]
        bodies = await asyncio.gather(*(gateway.body(i) for i in ids))
        assert gateway.read_stats == {"body_queries": 1, "bodies_asked": 22}
    finally:
        await gateway.stop()
    assert bodies[3] is None and bodies[-1] is None  # deleted, and never there
    assert [b for i, b in enumerate(bodies) if i not in (3, 21)] == [messages[0].body] * 20


async def test_an_accept_past_its_deadline_is_refused_and_never_committed(store: Store) -> None:
    """A database that stops answering costs an accept at most ``accept_deadline``: it
    fails as unavailable (the client is told 451), and once the database answers again
    an accept given up on before its cycle began is dropped, not committed behind the
    client's back (the cycle that hung may still commit: it had begun)."""
    gateway = SpoolGateway(SqlSpool(store, "node-a"), lease_seconds=300, accept_deadline=0.2)
    entered, hung = threading.Event(), threading.Event()

    def hang(_conn: Any) -> None:
        entered.set()
        hung.wait(30)

    event.listen(store.engine, "begin", hang)
    gateway.start()
    try:
        first = asyncio.ensure_future(gateway.accept(new_message(0), NOW))  # hangs a cycle
        assert await asyncio.to_thread(entered.wait, 30)
        with pytest.raises(DatabaseUnavailable, match="did not answer within"):
            await gateway.accept(new_message(1), NOW)  # waits behind it, then gives up
        with pytest.raises(DatabaseUnavailable):
            await first
        hung.set()
        await gateway.accept(new_message(2), NOW)
    finally:
        hung.set()
        await gateway.stop()
    assert states(store) == {"r0@dest.test": "queued", "r2@dest.test": "queued"}
