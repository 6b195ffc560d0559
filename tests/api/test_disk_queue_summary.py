"""GET /ga/api/v3/eng/disk_queue_summary: queued mail by VirtualMTA and domain or
throttle, largest first, agreeing with /api/queue and /metrics (SQLite and PostgreSQL:
the grouping is the store's)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from tests.api.test_queue_endpoint import T0
from tests.store.test_control_writes import relay as relay_server
from vmta.domain.attempts.spool_records import DELIVERED, QUEUED, NewMessage, Outcome
from vmta.domain.config.virtual_mta import IpAddress, Ref
from vmta.store.spool import SqlSpool
from vmta.store.store import Store
from vmta.store.virtual_mtas import VirtualMtaRepository

URL = "/ga/api/v3/eng/disk_queue_summary"


def accept(
    spool: SqlSpool, qid: str, selector: str | None, size_pad: int, *rcpts: str
) -> list[int]:
    jobs = spool.accept(
        [
            NewMessage(
                id=qid,
                received_at=T0 + len(qid),
                expires_at=T0 + 86_400,
                mail_from="me@example.com",
                recipients=list(rcpts),
                body=b"Subject: hi\r\n\r\n" + b"x" * size_pad,
                vmta_selector=selector,
                client_ip="127.0.0.1",
            )
        ],
        lease_until=T0 + 300,
    )
    return [job.recipient_id for job in jobs]


@pytest.fixture
def queue(store: Store) -> dict[str, int]:
    with store.write() as conn:
        repo = VirtualMtaRepository(conn)
        relay = repo.insert(relay_server("relay1"))
        ip = repo.insert(IpAddress(name="ip1", ip="127.0.0.3", hostname="ip1.test"))
    spool = SqlSpool(store, "node-a")
    [a1, _a2] = accept(spool, "Q1", "relay1", 100, "one@A.test", "two@a.test")
    [a3] = accept(spool, "Q22", "relay1", 50, "three@a.test")
    [_b1, done] = accept(spool, "Q333", str(ip), 10, "x@b.test", "y@c.test")
    accept(spool, "Q4444", None, 10, "weird@local@d.test")
    spool.record(
        [
            Outcome(
                a1,
                "Q1",
                T0 + 10,
                QUEUED,
                next_attempt_at=T0 + 70,
                reply="451 4.4.1 early",
                outcome_label="deferred",
                virtual_mta="relay1",
            ),
            Outcome(
                a3,
                "Q22",
                T0 + 20,
                QUEUED,
                next_attempt_at=T0 + 80,
                reply="451 4.4.1 later",
                outcome_label="deferred",
                virtual_mta="ip1",
            ),
            Outcome(done, "Q333", T0 + 5, DELIVERED, reply="250 ok", outcome_label="delivered"),
        ]
    )
    return {"relay": relay, "ip": ip}


def test_rows_by_virtual_mta_injected_and_domain_largest_first(
    client: TestClient, store: Store, queue: dict[str, int]
) -> None:
    body = client.get(URL, params={"group_variant": "domain"}).json()
    assert body["success"] is True and body["error_code"] is None
    rows = body["data"]["disk_queue_summary"]
    relay = {"type": "relay_server", "id": queue["relay"], "name": "relay1"}
    ip = {"type": "ip_address", "id": queue["ip"], "name": "ip1"}
    assert [(r["virtual_mta"], r["domain"], r["messages"], r["recipients"]) for r in rows] == [
        (relay, "a.test", 2, 3),
        (ip, "b.test", 1, 1),
        (None, "d.test", 1, 1),  # the text after the last @, and no VirtualMTA: the default
    ]
    first = rows[0]
    sizes = {m["id"]: m["size"] for m in client.get("/api/messages").json()["messages"]}
    assert first["bytes"] == sizes["Q1"] + sizes["Q22"]  # a message's size counts once
    assert first["oldest_injected_at"] == "2023-11-14T22:13:22+00:00"  # Q1: T0 + 2
    assert first["last_reply"] == "451 4.4.1 later"  # the most recent attempt's
    assert first["next_attempt_at"].endswith("+00:00")


def test_most_recent_virtual_mta_and_no_variant(
    client: TestClient, store: Store, queue: dict[str, int]
) -> None:
    rows = client.get(URL, params={"group_by": "virtualmta_most_recent"}).json()["data"][
        "disk_queue_summary"
    ]
    names = [(r["virtual_mta"] or {}).get("name") for r in rows]
    counts = [r["recipients"] for r in rows]
    # Q22's recipient was last tried through ip1; without a variant, no domain key.
    assert sorted(zip(names, counts, strict=True), key=str) == sorted(
        [("relay1", 2), ("ip1", 2), (None, 1)], key=str
    )
    assert all("domain" not in r and "throttle" not in r for r in rows)


def test_throttle_variant_names_the_ip_address_throttle(
    client: TestClient, store: Store, queue: dict[str, int]
) -> None:
    rows = client.get(URL, params={"group_variant": "throttle"}).json()["data"][
        "disk_queue_summary"
    ]
    by_vmta = {(r["virtual_mta"] or {}).get("name"): r["throttle"] for r in rows}
    assert by_vmta["relay1"] is None  # a relay server has no IP address throttle
    throttle = by_vmta["ip1"]
    assert throttle["ip_address"] == {"id": queue["ip"], "name": "ip1"}
    assert isinstance(throttle["id"], int) and throttle["id"] > 0
    assert by_vmta[None] is None  # no default VirtualMTA yet: no throttle

    with store.write() as conn:
        VirtualMtaRepository(conn).set_default(Ref(id=queue["ip"]))
    rows = client.get(URL, params={"group_variant": "throttle"}).json()["data"][
        "disk_queue_summary"
    ]
    unnamed = next(r for r in rows if r["virtual_mta"] is None)
    assert unnamed["throttle"]["ip_address"] == {"id": queue["ip"], "name": "ip1"}


def test_counts_agree_with_the_queue_endpoint_and_metrics(
    client: TestClient, queue: dict[str, int]
) -> None:
    rows = client.get(URL).json()["data"]["disk_queue_summary"]
    queued = client.get("/api/queue").json()["recipients"]["queued"]
    metrics = client.get("/metrics").text
    in_metrics = sum(
        float(m.group(2))
        for m in re.finditer(
            r'^vmta_queue_recipients\{state="(ready|deferred|waiting)"\} (\S+)$', metrics, re.M
        )
    )
    assert sum(r["recipients"] for r in rows) == queued == in_metrics == 5


@pytest.mark.one_database
@pytest.mark.parametrize(
    ("params", "problems"),
    [
        ({"group_by": "virtualmta"}, ["group_by must be one of"]),
        ({"group_variant": "ip"}, ["group_variant must be one of"]),
        (
            {"group_by": "", "group_variant": "DOMAIN"},
            ["group_by must be one of", "group_variant must be one of"],
        ),
    ],
)
def test_bad_parameters_are_invalid_request(
    client: TestClient, params: dict[str, str], problems: list[str]
) -> None:
    response = client.get(URL, params=params)
    assert response.status_code == 400
    body = response.json()
    assert body["error_code"] == "invalid_request" and body["data"] is None
    assert len(body["error_messages"]) == len(problems)
    for message, start in zip(body["error_messages"], problems, strict=True):
        assert message.startswith(start)


@pytest.mark.one_database
def test_an_empty_queue_has_no_rows(client: TestClient) -> None:
    assert client.get(URL).json()["data"] == {"disk_queue_summary": []}
