"""What the console reads from the spool, on SQLite and PostgreSQL (each has its own
spelling of the minute arithmetic and of a search in message bodies): outcomes per minute
over the last hour, and messages found by queue id, recipient, @domain or Message-ID."""

from __future__ import annotations

from vmta.domain.attempts.spool_records import DELIVERED, FAILED, QUEUED, NewMessage, Outcome
from vmta.store.delivery_rates import recent_rates
from vmta.store.message_search import find_messages
from vmta.store.spool import SqlSpool
from vmta.store.store import Store

NOW = 1_700_003_600.0


def message(qid: str, at: float, *rcpts: str, bounce: bool = False, msgid: str = "") -> NewMessage:
    head = f"Message-ID: <{msgid}>\r\n" if msgid else ""
    return NewMessage(
        id=qid,
        received_at=at,
        expires_at=at + 86_400,
        mail_from="" if bounce else "me@src.test",
        recipients=list(rcpts),
        body=f"{head}Subject: hi\r\n\r\nhello\r\n".encode(),
        is_bounce=bounce,
    )


def test_outcomes_per_minute_over_the_last_hour(store: Store) -> None:
    spool = SqlSpool(store, "node-a")
    jobs = spool.accept(
        [message("Q1", NOW - 7200, "a@x.test", "b@x.test", "c@x.test", "d@x.test")],
        lease_until=NOW + 300,
    )
    a, b, c, d = (job.recipient_id for job in jobs)
    spool.record(
        [
            Outcome(a, "Q1", NOW - 10, DELIVERED, reply="250 ok", outcome_label="delivered"),
            Outcome(
                b,
                "Q1",
                NOW - 30,
                QUEUED,
                next_attempt_at=NOW + 60,
                reply="451 later",
                outcome_label="deferred",
            ),
            Outcome(c, "Q1", NOW - 61, FAILED, reply="550 no", outcome_label="failed"),
            Outcome(d, "Q1", NOW - 4000, DELIVERED, reply="250 ok", outcome_label="delivered"),
        ]
    )
    spool.accept([message("B1", NOW - 1800.5, "me@src.test", bounce=True)], lease_until=NOW)
    rates = recent_rates(store, NOW)
    assert [rates.last_minute(o) for o in ("delivered", "deferred", "failed", "bounced")] == [
        1,
        1,
        0,
        0,
    ]
    # The one of 4000 s ago is past the hour.
    assert [rates.last_hour(o) for o in ("delivered", "deferred", "failed", "bounced")] == [
        1,
        1,
        1,
        1,
    ]
    assert rates.per_minute["failed"][58] == 1  # 61 s ago: the minute before the last
    assert rates.per_minute["bounced"][29] == 1  # 1800.5 s ago: floor, not rounding


def test_messages_found_by_queue_id_recipient_domain_and_message_id(store: Store) -> None:
    spool = SqlSpool(store, "node-a")
    spool.accept(
        [
            message("Q1", NOW - 20, "Ann@Example.test", msgid="one@src.test"),
            message("Q2", NOW - 10, "bob@example.test", "carl@other.test", msgid="two@src.test"),
            message("Q3", NOW, "dan@elsewhere.test"),
        ],
        lease_until=NOW + 300,
    )

    def ids(query: str) -> list[str]:
        return [row["id"] for row in find_messages(store, query)]

    assert ids("Q1") == ["Q1"]
    assert ids("ann@example.TEST") == ["Q1"]  # addresses ignore case
    assert ids("@example.test") == ["Q2", "Q1"]  # newest first
    assert ids("<two@src.test>") == ["Q2"] and ids("two@src.test") == ["Q2"]
    assert ids("one@src") == []  # a Message-ID matches whole, not in part
    assert ids("%") == [] and ids("@%") == [] and ids("") == []
    [q2] = find_messages(store, "Q2")
    assert (q2["recipients"], q2["queued"]) == (2, 2)
