"""GET /api/queue: counts, and the deferred recipients with their attempts so far (read
from the spool, on SQLite and PostgreSQL: ordering and filtering are the store's)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from vmta.domain.attempts.spool_records import DELIVERED, QUEUED, NewMessage, Outcome
from vmta.store.spool import SqlSpool
from vmta.store.store import Store

T0 = 1_700_000_000.0


def accept(spool: SqlSpool, qid: str, *rcpts: str) -> list[int]:
    jobs = spool.accept(
        [
            NewMessage(
                id=qid,
                received_at=T0,
                expires_at=T0 + 86_400,
                mail_from="me@example.com",
                recipients=list(rcpts),
                body=b"Subject: hi\r\n\r\nhello\r\n",
                vmta_selector="new-relay-server",
                client_ip="127.0.0.1",
            )
        ],
        lease_until=T0 + 300,
    )
    return [job.recipient_id for job in jobs]


def deferred(rid: int, qid: str, at: float, reply: str) -> Outcome:
    return Outcome(
        rid,
        qid,
        at,
        QUEUED,
        next_attempt_at=at + 60,
        reply=reply,
        outcome_label="deferred",
        virtual_mta="new-relay-server",
    )


def test_deferred_recipients_show_attempts_and_the_last_reply(
    client: TestClient, store: Store
) -> None:
    spool = SqlSpool(store, "node-a")
    [first] = accept(spool, "Q1", "you@example.net")
    [second, done] = accept(spool, "Q2", "them@example.org", "ok@example.org")
    accept(spool, "Q3", "untried@example.com")  # never attempted: not deferred
    spool.record([deferred(first, "Q1", T0 + 1, "451 4.4.1 connection refused")])
    assert [job.recipient_id for job in spool.claim_due(T0 + 61, 10, T0 + 400)] == [first]
    spool.record([deferred(first, "Q1", T0 + 61, "451 auth failed: 235 was expected")])
    spool.record(
        [
            deferred(second, "Q2", T0 + 30, "421 4.3.2 busy"),
            Outcome(done, "Q2", T0 + 30, DELIVERED, reply="250 ok", outcome_label="delivered"),
        ]
    )

    body = client.get("/api/queue").json()

    assert body["recipients"] == {"queued": 3, "delivered": 1, "failed": 0}
    assert body["queued"] == {"ready": 1, "deferred": 2, "waiting": 0}
    assert body["deferred"] == [
        {
            "queue_id": "Q1",
            "recipient": "you@example.net",
            "virtual_mta": "new-relay-server",
            "attempts": 2,
            "last_attempt_at": T0 + 61,
            "next_attempt_at": T0 + 121,
            "last_reply": "451 auth failed: 235 was expected",
        },
        {
            "queue_id": "Q2",
            "recipient": "them@example.org",
            "virtual_mta": "new-relay-server",
            "attempts": 1,
            "last_attempt_at": T0 + 30,
            "next_attempt_at": T0 + 90,
            "last_reply": "421 4.3.2 busy",
        },
    ]
    assert body["engine"] == {"running": False}  # no data plane in this app


def test_an_empty_spool_has_no_deferred_recipients(client: TestClient) -> None:
    body = client.get("/api/queue").json()
    assert body["deferred"] == []
    assert body["recipients"] == {"queued": 0, "delivered": 0, "failed": 0}
