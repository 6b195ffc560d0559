"""A removed MailerQ pause releases the mail it held at the next look (every ~2 s), not at
the router's recheck a minute later; a pause that stays keeps its mail. Real store
(SQLite and PostgreSQL), manual clock."""

from __future__ import annotations

from sqlalchemy import select

from tests.manual_clock import ManualClock
from vmta.delivery.engine.pause_release import PauseRelease
from vmta.delivery.routing.config_view import ConfigView
from vmta.delivery.routing.router import PAUSED_REASON_PREFIX
from vmta.domain.attempts.spool_records import QUEUED, NewMessage, Outcome
from vmta.domain.paths.delivery_controls import Pause, matcher
from vmta.store.delivery_controls import PauseRepository
from vmta.store.spool import SqlSpool
from vmta.store.store import Store
from vmta.store.tables import recipients

T0 = 1_700_000_000.0


def held(spool: SqlSpool, qid: str, address: str, reason: str) -> None:
    [job] = spool.accept(
        [
            NewMessage(
                id=qid,
                received_at=T0,
                expires_at=T0 + 86_400,
                mail_from="me@src.test",
                recipients=[address],
                body=b"Subject: hi\r\n\r\nhello\r\n",
            )
        ],
        lease_until=T0 + 300,
    )
    hold = Outcome(
        job.recipient_id,
        qid,
        T0,
        QUEUED,
        next_attempt_at=T0 + 60.0,
        reply=reason,
        attempted=False,
        waiting_reason=reason,
    )
    spool.record([hold])


def due_at(store: Store) -> dict[str, float]:
    with store.read() as conn:
        rows = conn.execute(select(recipients.c.address, recipients.c.next_attempt_at))
        return {row.address: row.next_attempt_at for row in rows}


async def test_removing_a_pause_makes_its_mail_due_at_the_next_look(store: Store) -> None:
    clock = ManualClock(T0)
    woken: list[float] = []
    watcher = PauseRelease(
        store, ConfigView(store, clock), clock, lambda: woken.append(clock.now())
    )
    with store.write() as conn:
        PauseRepository(conn).put(Pause(matcher(domain="c.test")))
        PauseRepository(conn).put(Pause(matcher(domain="d.test")))
    spool = SqlSpool(store, "node-a")
    held(spool, "Q1", "u@c.test", f"{PAUSED_REASON_PREFIX}domain c.test).")
    held(spool, "Q2", "u@d.test", f"{PAUSED_REASON_PREFIX}domain d.test).")
    held(spool, "Q3", "u@e.test", "No route yet.")  # waiting for configuration, no pause

    assert await watcher.look() == 0  # the first look only learns the pauses
    clock.advance(2.0)
    assert await watcher.look() == 0  # nothing changed: nothing released, no write
    assert due_at(store)["u@c.test"] == T0 + 60.0 and woken == []

    with store.write() as conn:
        PauseRepository(conn).remove(matcher(domain="c.test"))
    clock.advance(2.0)
    # Every paused recipient is due now (the one still paused is held again by the
    # router at its next look); mail waiting for another reason is left alone.
    assert await watcher.look() == 2
    assert due_at(store) == {"u@c.test": T0 + 4.0, "u@d.test": T0 + 4.0, "u@e.test": T0 + 60.0}
    assert woken == [T0 + 4.0]


async def test_the_release_is_repeated_once_for_a_hold_decided_meanwhile(store: Store) -> None:
    clock = ManualClock(T0)
    watcher = PauseRelease(store, ConfigView(store, clock), clock, lambda: None)
    with store.write() as conn:
        PauseRepository(conn).put(Pause(matcher(domain="c.test")))
    assert await watcher.look() == 0
    with store.write() as conn:
        PauseRepository(conn).remove(matcher(domain="c.test"))
    clock.advance(2.0)
    assert await watcher.look() == 0  # nothing held yet
    # A hold decided on the old controls lands after the first release...
    held(SqlSpool(store, "node-a"), "Q1", "u@c.test", f"{PAUSED_REASON_PREFIX}domain c.test).")
    clock.advance(2.0)
    assert await watcher.look() == 1  # ...and the second look releases it
    clock.advance(2.0)
    held(SqlSpool(store, "node-b"), "Q2", "v@c.test", f"{PAUSED_REASON_PREFIX}domain c.test).")
    assert await watcher.look() == 0  # then it stops looking until a pause goes away


async def test_every_node_forgets_the_removed_pause_at_its_next_look(store: Store) -> None:
    """Two nodes on one database, each with its own cached controls: the one that did not
    remove the pause stops holding mail for it at its next look, without waiting for its
    cache to expire (the clock does not move here)."""
    clock = ManualClock(T0)
    views = [ConfigView(store, clock, ttl=3600.0) for _ in range(2)]
    watchers = [PauseRelease(store, view, clock, lambda: None) for view in views]
    with store.write() as conn:
        PauseRepository(conn).put(Pause(matcher(domain="c.test")))
    for view, watcher in zip(views, watchers, strict=True):
        assert len((await view.delivery_controls()).pauses) == 1
        assert await watcher.look() == 0
    held(SqlSpool(store, "node-b"), "Q1", "u@c.test", f"{PAUSED_REASON_PREFIX}domain c.test).")
    with store.write() as conn:
        PauseRepository(conn).remove(matcher(domain="c.test"))
    released = [await watcher.look() for watcher in watchers]
    assert sorted(released) == [0, 1]  # one node releases it; the other finds it due
    for view in views:
        assert (await view.delivery_controls()).pauses == ()
