"""Bulk actions on the queue (``POST /api/queue/{retry,delete,hold,release}``) and the
message search (``GET /api/messages?recipient=&sender=&message_id=``), on SQLite and
PostgreSQL: a recipient claimed by a node is never changed and is counted apart; the
counts are exact; a held recipient is not claimed until released."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from vmta.domain.attempts.spool_records import QUEUED, NewMessage, Outcome
from vmta.store.spool import SqlSpool
from vmta.store.store import Store

T0 = 1_700_000_000.0


def accept(spool: SqlSpool, qid: str, *rcpts: str, mid: str = "") -> list[int]:
    header = f"Message-ID: <{mid}>\r\n" if mid else ""
    jobs = spool.accept(
        [
            NewMessage(
                id=qid,
                received_at=T0,
                expires_at=T0 + 86_400,
                mail_from="Me@Example.com",
                recipients=list(rcpts),
                body=f"{header}Subject: hi\r\n\r\nMessage-ID: <in-body@x>\r\n".encode(),
                vmta_selector="relay-a",
            )
        ],
        lease_until=T0 + 300,  # claimed by node-a at once (the fast path)
    )
    return [job.recipient_id for job in jobs]


def deferred(rid: int, qid: str) -> Outcome:
    return Outcome(
        rid, qid, T0 + 1, QUEUED, next_attempt_at=T0 + 61, reply="451 later",
        outcome_label="deferred",
    )  # fmt: skip


def post(client: TestClient, action: str, query: str) -> dict[str, int]:
    response = client.post(f"/api/queue/{action}?{query}")
    assert response.status_code == 200, response.text
    body: dict[str, int] = response.json()
    return body


def states(client: TestClient, qid: str) -> dict[str, str | None]:
    response = client.get(f"/api/messages/{qid}")
    if response.status_code == 404:
        return {}
    return {r["address"]: r["waiting_reason"] for r in response.json()["message"]["recipients"]}


def test_bulk_actions_leave_claimed_recipients_alone(client: TestClient, store: Store) -> None:
    spool = SqlSpool(store, "node-a")
    a, b = accept(spool, "Q1", "a@x.test", "b@y.test")
    [c] = accept(spool, "Q2", "c@X.test")
    accept(spool, "Q3", "d@x.test")  # stays claimed: in flight
    spool.record([deferred(a, "Q1"), deferred(b, "Q1"), deferred(c, "Q2")])

    held = post(client, "hold", "domain=x.test")
    assert held == {"action": "hold", "changed": 2, "in_flight": 1, "messages_deleted": 0}
    assert states(client, "Q1") == {"a@x.test": "held by an operator", "b@y.test": None}
    # Held ones are not retried, and no poll claims them.
    assert post(client, "retry", "domain=x.test")["changed"] == 0
    assert [j.recipient_id for j in spool.claim_due(T0 + 100, 10, T0 + 400)] == [b]

    released = post(client, "release", "virtual_mta=relay-a")
    assert (released["changed"], released["in_flight"]) == (2, 0)  # only held ones count
    assert states(client, "Q2") == {"c@X.test": None}

    gone = post(client, "delete", "domain=x.test&sender=me@example.com&state=queued")
    assert gone == {"action": "delete", "changed": 2, "in_flight": 1, "messages_deleted": 1}
    assert states(client, "Q1") == {"b@y.test": None}
    assert states(client, "Q2") == {}
    assert set(states(client, "Q3")) == {"d@x.test"}
    # Nothing left to change: counts are exact, not estimates.
    assert post(client, "delete", "domain=x.test")["changed"] == 0
    assert post(client, "retry", "older_than=0")["changed"] == 0  # b, d claimed


def test_message_search(client: TestClient, store: Store) -> None:
    spool = SqlSpool(store, "node-a")
    accept(spool, "Q1", "a@x.test", mid="mid-1@vmta.test")
    accept(spool, "Q2", "B@y.test", mid="mid-2@vmta.test")

    def ids(query: str) -> list[str]:
        response = client.get(f"/api/messages?{query}")
        assert response.status_code == 200, response.text
        return [m["id"] for m in response.json()["messages"]]

    assert ids("recipient=b@Y.TEST") == ["Q2"]
    assert ids("sender=me@example.com") == ["Q1", "Q2"]
    assert ids("message_id=mid-2@vmta.test") == ["Q2"]
    assert ids("message_id=%3Cmid-1@vmta.test%3E&state=queued") == ["Q1"]
    assert ids("message_id=in-body@x") == []  # only the header counts
    assert ids("recipient=nobody@x.test") == []


@pytest.mark.one_database
@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("/api/queue/delete", "give at least one of"),
        ("/api/queue/retry?bogus=1", "unknown parameter 'bogus'"),
        ("/api/queue/hold?state=sleeping", "state must be one of"),
        ("/api/queue/release?older_than=soon", "older_than must be a number"),
        ("/api/queue/delete?domain=", "domain must not be empty"),
        ("/api/queue/delete?domain=a&domain=b", "give each parameter once"),
    ],
)
def test_bad_selections_are_400_and_change_nothing(
    client: TestClient, path: str, error: str
) -> None:
    response = client.post(path)
    assert response.status_code == 400, response.text
    assert error in response.json()["error"]


@pytest.mark.one_database
def test_unknown_search_parameters_are_400(client: TestClient) -> None:
    response = client.get("/api/messages?recipent=a@x.test")
    assert response.status_code == 400
    assert "unknown parameter 'recipent'" in response.json()["error"]


@pytest.mark.one_database
def test_every_own_operation_declares_what_it_answers(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    own = {p: item for p, item in document["paths"].items() if p.startswith("/api/")}
    assert {
        "/api/queue/retry",
        "/api/queue/delete",
        "/api/queue/hold",
        "/api/queue/release",
    } <= set(own)
    for path, item in own.items():
        for method, operation in item.items():
            if path == "/api/v1/send.json":
                continue  # GreenArrow's own answer, declared by its module
            schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
            assert schema["type"] == "object" and schema["required"], (method, path)
    bulk = own["/api/queue/delete"]["post"]
    assert {p["name"] for p in bulk["parameters"]} == {
        "virtual_mta", "domain", "sender", "state", "older_than"
    }  # fmt: skip
