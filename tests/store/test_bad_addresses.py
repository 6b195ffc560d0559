"""The bad-address threshold on SQLite and PostgreSQL: bounces counted per recipient and
list inside the recording transaction, ``bounce_bad_address`` written once when a
threshold is crossed, and the suppression added in the same transaction. Times are
given to the store (the injectable clock of these tests), never read from the host."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from vmta.domain.attempts.spool_records import FAILED, NewMessage, Outcome
from vmta.domain.reports.bad_address import BadAddressPolicy
from vmta.domain.reports.delivery_event import (
    BOUNCE_ALL,
    BOUNCE_BAD_ADDRESS,
    DELIVERY_ATTEMPT,
    EventSubscription,
    greenarrow_event,
)
from vmta.store.bad_addresses import count_bounce, is_bad
from vmta.store.spool import SqlSpool
from vmta.store.store import Store
from vmta.store.suppressions import SuppressionRepository
from vmta.store.tables import events

T0 = 1_700_000_000.0
DAY = 86_400.0
HTTP = EventSubscription("http", frozenset({DELIVERY_ATTEMPT, BOUNCE_ALL, BOUNCE_BAD_ADDRESS}))
KEPT = {"X-GreenArrow-ListID": "List-7", "X-GreenArrow-SendID": "S1"}


def message(qid: str, rcpt: str) -> NewMessage:
    return NewMessage(
        id=qid,
        received_at=T0,
        expires_at=T0 + 3600,
        mail_from="sender@src.test",
        recipients=[rcpt],
        body=b"Subject: x\r\n\r\nx\r\n",
        kept_headers=KEPT,
    )


def fail(spool: SqlSpool, qid: str, rcpt: str, reply: str, at: float, **kw: Any) -> None:
    (job,) = spool.accept([message(qid, rcpt)], at + 300)
    spool.record(
        [
            Outcome(
                job.recipient_id,
                qid,
                at,
                FAILED,
                reply=reply,
                outcome_label="failed",
                stage=kw.pop("stage", "rcptto"),
                remote_ip="127.0.0.1",
                remote_host="mx.dest.test",
                **kw,
            )
        ]
    )


def stored(store: Store) -> list[tuple[str, dict[str, Any]]]:
    with store.read() as conn:
        rows = conn.execute(select(events).order_by(events.c.id)).all()
    return [(r.event_type, greenarrow_event(r.id, r.payload, "n1")) for r in rows]


def suppression(store: Store, address: str) -> Any:
    with store.read() as conn:
        return SuppressionRepository(conn).get(address)


def test_one_hard_bounce_makes_a_bad_address_once_and_suppresses_it(store: Store) -> None:
    spool = SqlSpool(store, "a", event_subscriptions=[HTTP], bad_address_policy=BadAddressPolicy())
    fail(spool, "Q1", "Gone@Dest.test", "550 5.1.1 No such user", T0)
    kinds = [kind for kind, _ in stored(store)]
    assert kinds == [DELIVERY_ATTEMPT, BOUNCE_ALL, BOUNCE_BAD_ADDRESS]
    bad = stored(store)[2][1]
    assert bad["event_type"] == "bounce_bad_address"
    assert (bad["email"], bad["listid"], bad["sendid"], bad["message_id"]) == (
        "Gone@Dest.test",
        "list-7",
        "s1",
        "Q1",
    )
    assert bad["event_time"] == int(T0) and bad["event_unique_id"] == str(bad["id"])
    entry = suppression(store, "gone@dest.test")
    assert (entry.code, entry.extended, entry.type.value) == (550, "5.1.1", "address")
    assert entry.description == "bad address: 1 hard bounce(s)"

    # A second hard bounce of the same address and list: counted, no second event.
    fail(spool, "Q2", "gone@dest.test", "550 5.1.1 No such user", T0 + 10)
    assert [kind for kind, _ in stored(store)].count(BOUNCE_BAD_ADDRESS) == 1


def test_soft_bounces_count_within_the_window_per_list(store: Store) -> None:
    policy = BadAddressPolicy(hard=1, soft=3, days=7)
    with store.write() as conn:

        def soft(at: float, listid: str = "l1") -> bool:
            return count_bounce(
                conn,
                recipient="full@dest.test",
                listid=listid,
                bounce_type="s",
                at=at,
                policy=policy,
                subscriptions=[HTTP],
                event_fields={"message_id": "Q9"},
            )

        assert not soft(T0) and not soft(T0 + 1 * DAY)
        # Day 9: the first two are out of the 7-day window; this is one.
        assert not soft(T0 + 9 * DAY)
        assert not soft(T0 + 10 * DAY)
        assert not soft(T0 + 10 * DAY, listid="other")  # another list counts on its own
        assert not count_bounce(
            conn,
            recipient="full@dest.test",
            listid="l1",
            bounce_type="o",  # a policy block counts for nothing
            at=T0 + 10.5 * DAY,
            policy=policy,
        )
        assert soft(T0 + 11 * DAY)  # the third within seven days
        assert not soft(T0 + 12 * DAY)  # once
        assert is_bad(conn, "FULL@dest.test", "L1") and not is_bad(conn, "full@dest.test", "other")
    bad = [fields for kind, fields in stored(store) if kind == BOUNCE_BAD_ADDRESS]
    assert len(bad) == 1 and bad[0]["event_time"] == int(T0 + 11 * DAY)
    assert bad[0]["email"] == "full@dest.test" and bad[0]["listid"] == "l1"
    assert suppression(store, "full@dest.test").description == (
        "bad address: 3 soft bounces within 7 days"
    )


def test_without_suppression_and_with_an_operator_entry(store: Store) -> None:
    spool = SqlSpool(
        store,
        "a",
        event_subscriptions=[HTTP],
        bad_address_policy=BadAddressPolicy(suppress=False),
    )
    fail(spool, "Q1", "a@dest.test", "550 5.1.1 no", T0)
    assert BOUNCE_BAD_ADDRESS in [kind for kind, _ in stored(store)]
    assert suppression(store, "a@dest.test") is None

    from vmta.domain.paths.suppression import Suppression, SuppressionType

    with store.write() as conn:
        SuppressionRepository(conn).put(
            Suppression("b@dest.test", SuppressionType.ADDRESS, 551, "5.7.1", "trap")
        )
    keeping = SqlSpool(store, "a", bad_address_policy=BadAddressPolicy())
    fail(keeping, "Q2", "b@dest.test", "550 5.1.1 no", T0 + 1)
    assert suppression(store, "b@dest.test").code == 551  # the operator's entry stays


def test_refusals_that_are_not_the_address_do_not_count(store: Store) -> None:
    spool = SqlSpool(store, "a", event_subscriptions=[HTTP], bad_address_policy=BadAddressPolicy())
    fail(spool, "Q1", "s@dest.test", "550 5.1.1 suppressed", T0, stage="suppression")
    fail(spool, "Q2", "f@dest.test", "550 5.1.1 forced", T0, stage="process")
    fail(spool, "Q3", "p@dest.test", "554 5.7.1 blocked", T0)
    assert BOUNCE_BAD_ADDRESS not in [kind for kind, _ in stored(store)]
    with store.read() as conn:
        assert not any(is_bad(conn, f"{x}@dest.test", "list-7") for x in "sfp")
