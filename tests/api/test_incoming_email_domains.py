"""Incoming email domains (GreenArrow API v3) and their bounce, spam complaint and
forwarding mailboxes: the calls a GreenArrow client makes, with bodies sent without a
Content-Type as GreenArrow's Python client sends them, and the errors of §2.3."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import GA, failed, ok, snapshot
from vmta.store.store import Store

URL = f"{GA}/incoming_email_domains"


def raw(client: TestClient, method: str, url: str, body: Any) -> Any:
    """A request whose JSON body carries no Content-Type header."""
    return client.request(method, url, content=json.dumps(body).encode())


def create(client: TestClient, domain: str = "bounces.example.com", status: str = "normal") -> int:
    data = ok(raw(client, "POST", URL, {"domain": {"domain": domain, "email_status": status}}))
    return int(data["domain"]["id"])


def test_the_client_calls_without_content_type(client: TestClient) -> None:
    response = raw(
        client, "POST", URL, {"domain": {"domain": "Bounces.Example.com", "email_status": "normal"}}
    )
    record = ok(response)["domain"]
    assert record == {
        "id": record["id"],
        "type": "incoming_email_domain",
        "domain": "Bounces.Example.com",
        "email_status": "normal",
    }
    rid = record["id"]
    box = ok(
        raw(client, "POST", f"{URL}/{rid}/bounce_mailboxes", {"mailbox": {"localpart": "return"}})
    )
    assert box["mailbox"] == {"id": box["mailbox"]["id"], "localpart": "return"}
    spam = ok(
        raw(
            client,
            "POST",
            f"{URL}/{rid}/spam_complaint_mailboxes",
            {"mailbox": {"localpart": "fbl"}},
        )
    )
    assert spam["mailbox"]["localpart"] == "fbl"
    fwd = ok(
        raw(
            client,
            "POST",
            f"{URL}/{rid}/forwarding_mailboxes",
            {"mailbox": {"localpart": "postmaster", "forward_to": ["ops@example.org"]}},
        )
    )
    assert fwd["mailbox"] == {
        "id": fwd["mailbox"]["id"],
        "localpart": "postmaster",
        "forward_to": ["ops@example.org"],
        "is_wildcard": False,
    }
    listed = ok(client.get(f"{URL}/{rid}/bounce_mailboxes"))
    assert listed["mailboxes"] == [{"id": box["mailbox"]["id"], "localpart": "return"}]
    assert listed["pagination"]["num_records"] == 1
    # The list of domains: GreenArrow's example rows, filtered ignoring case.
    rows = ok(client.get(URL, params={"domain": "bounces.EXAMPLE.com"}))
    assert rows["domains"] == [
        {"id": rid, "type": "incoming_email_domain", "domain": "Bounces.Example.com"}
    ]
    assert ok(client.get(URL, params={"domain": "other.example.com"}))["domains"] == []
    # Mailbox ids are their own; a mailbox of one kind is not found under another.
    mid = box["mailbox"]["id"]
    failed(client.delete(f"{URL}/{rid}/spam_complaint_mailboxes/{mid}"), 404, "not_found")
    assert ok(client.delete(f"{URL}/{rid}/bounce_mailboxes/{mid}")) == {}
    assert ok(client.get(f"{URL}/{rid}/bounce_mailboxes"))["mailboxes"] == []


def test_put_is_partial_and_delete_removes_mailboxes(client: TestClient) -> None:
    rid = create(client)
    ok(raw(client, "POST", f"{URL}/{rid}/bounce_mailboxes", {"mailbox": {"localpart": "return"}}))
    updated = ok(raw(client, "PUT", f"{URL}/{rid}", {"domain": {"email_status": "defer"}}))[
        "domain"
    ]
    assert updated["email_status"] == "defer" and updated["domain"] == "bounces.example.com"
    assert ok(client.get(f"{URL}/{rid}"))["domain"] == updated
    assert ok(client.delete(f"{URL}/{rid}")) == {}
    failed(client.get(f"{URL}/{rid}"), 404, "not_found")
    failed(client.get(f"{URL}/{rid}/bounce_mailboxes"), 404, "not_found")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"domain": "a-.example.com", "email_status": "normal"}, "domain.domain must be a domain"),
        (
            {"domain": "x.example.com", "email_status": "paused"},
            "domain.email_status must be one of",
        ),
        ({"domain": "x.example.com"}, "domain.email_status"),
        ({"domain": 5, "email_status": "normal"}, "domain.domain"),
        ({"domain": "x.example.com", "email_status": "normal", "color": 1}, "color"),
    ],
)
@pytest.mark.one_database
def test_bad_domains_are_refused_and_change_nothing(
    client: TestClient, store: Store, body: dict[str, Any], expected: str
) -> None:
    before = snapshot(store)
    messages = failed(raw(client, "POST", URL, {"domain": body}), 400, "validation_failed")
    assert any(expected in m for m in messages), messages
    assert snapshot(store) == before


@pytest.mark.one_database
def test_envelope_errors(client: TestClient) -> None:
    failed(client.post(URL, content=b"not json"), 400, "invalid_request")
    failed(raw(client, "POST", URL, {"mailbox": {}}), 400, "invalid_request")
    failed(client.get(URL, params={"page_token": "garbage"}), 400, "invalid_request")
    failed(client.get(f"{URL}/99"), 404, "not_found")
    failed(client.patch(f"{URL}/1"), 405, "invalid_request")
    rid = create(client)
    failed(
        raw(client, "POST", f"{URL}/{rid}/bounce_mailboxes", {"mailbox": {"localpart": "a b"}}),
        400,
        "validation_failed",
    )
    failed(
        raw(
            client, "POST", f"{URL}/{rid}/bounce_mailboxes", {"mailbox": {"localpart": "r", "x": 1}}
        ),
        400,
        "validation_failed",
    )
    failed(
        raw(client, "POST", f"{URL}/{rid}/forwarding_mailboxes", {"mailbox": {"localpart": "f"}}),
        400,
        "validation_failed",
    )
    failed(
        raw(client, "POST", f"{URL}/999/bounce_mailboxes", {"mailbox": {"localpart": "r"}}),
        404,
        "not_found",
    )


def test_uniqueness_ignoring_case(client: TestClient) -> None:
    rid = create(client, "b.example.com")
    messages = failed(
        raw(client, "POST", URL, {"domain": {"domain": "B.EXAMPLE.COM", "email_status": "normal"}}),
        400,
        "validation_failed",
    )
    assert "already used" in messages[0]
    ok(raw(client, "POST", f"{URL}/{rid}/bounce_mailboxes", {"mailbox": {"localpart": "Return"}}))
    messages = failed(
        raw(
            client,
            "POST",
            f"{URL}/{rid}/spam_complaint_mailboxes",
            {"mailbox": {"localpart": "return"}},
        ),
        400,
        "validation_failed",
    )
    assert "already used" in messages[0]
