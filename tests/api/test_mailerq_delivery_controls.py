"""MailerQ REST API v1 pauses, forced errors and suppressions: every request shape of
MailerQ's pages, in JSON and form encoding, and every rule; bad input changes nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import snapshot
from tests.api.test_mailerq_pools import FORM, JSON, error, ok
from tests.conftest import TEST_SECRET
from tests.manual_clock import ManualClock
from vmta.api.app import create_app
from vmta.api.ports import ApiPorts
from vmta.store.store import Store

# MailerQ's pause example puts no comma between the fields (it is not JSON); the same
# body with the comma, and its documented form-encoded twin.
DOC_PAUSE_JSON = b"""{
    "domain": "hotmail.com",
    "tag": "Campaign1"
}"""
DOC_PAUSE_AS_PRINTED = b"""{
    "domain": "hotmail.com"
    "tag": "Campaign1"
}"""
DOC_PAUSE_FORM = b"domain=hotmail.com&tag=Campaign1"
DOC_PAUSES = [
    {"mta": "1.2.3.4", "ip": "123.2.3.4"},
    {"mta": "1.2.3.4", "domain": "gmail.com"},
    {"domain": "hotmail.com", "cluster": True},
    {"pool": "shared-pool-1", "domain": "yahoo.com"},
]
DOC_ERRORS = [
    {"mta": "1.2.3.4", "ip": "123.2.3.4", "code": 500},
    {"mta": "1.2.3.4", "domain": "gmail.com", "code": 421, "description": "forced deferring"},
    {"domain": "hotmail.com", "cluster": True, "code": 521, "extended": "5.2.1"},
    {
        "pool": "shared-pool-1",
        "domain": "yaho0.com",
        "code": "553",
        "description": "invalid mailbox",
    },
]
DOC_SUPPRESSION_JSON = b"""{
    "type": "address",
    "value": "test@example.net",
    "code": 551,
    "extended": "5.1.1",
    "description": "Spamtrap"
}"""
DOC_SUPPRESSION_FORM = (
    b"type=address&value=test%40example.net&code=551&extended=5.5.1&description=Spamtrap"
)


@pytest.mark.parametrize(("body", "headers"), [(DOC_PAUSE_JSON, JSON), (DOC_PAUSE_FORM, FORM)])
def test_documented_pause_json_and_form(
    client: TestClient, body: bytes, headers: dict[str, str]
) -> None:
    stored = ok(client.post("/v1/pauses", content=body, headers=headers))
    assert stored == {"domain": "hotmail.com", "tag": "Campaign1", "cluster": False}
    assert ok(client.get("/v1/pauses")) == [stored]
    removed = ok(client.request("DELETE", "/v1/pauses", content=body, headers=headers))
    assert removed == stored
    assert ok(client.get("/v1/pauses")) == []


def test_the_printed_pause_example_is_not_json(client: TestClient, store: Store) -> None:
    before = snapshot(store)
    message = error(client.post("/v1/pauses", content=DOC_PAUSE_AS_PRINTED, headers=JSON), 400)
    assert message == "The request body is not valid JSON."
    assert snapshot(store) == before


def test_documented_pause_listing(client: TestClient) -> None:
    for pause in DOC_PAUSES:
        ok(client.post("/v1/pauses", json=pause))
    listed = ok(client.get("/v1/pauses"))
    assert listed == [{**p, "cluster": p.get("cluster", False)} for p in DOC_PAUSES]
    # GET writes only the fields that are set, plus cluster, in MailerQ's order.
    assert list(listed[0]) == ["mta", "ip", "cluster"]


def test_same_matcher_updates_not_duplicates(client: TestClient) -> None:
    ok(client.post("/v1/pauses", json={"domain": "Gmail.COM"}))
    ok(client.post("/v1/pauses", content=b"domain=gmail.com&cluster=true", headers=FORM))
    assert ok(client.get("/v1/pauses")) == [{"domain": "gmail.com", "cluster": True}]


def test_expire_is_written_back_and_an_expired_pause_is_not_listed(store: Store) -> None:
    clock = ManualClock(1_900_000_000.0)
    app = create_app(ApiPorts(store, data_plane=None, now=clock.now))
    with TestClient(app, headers={"Authorization": f"Bearer {TEST_SECRET}"}) as client:
        stored = ok(
            client.post("/v1/pauses", json={"mta": "1.2.3.4", "expire": "2030-03-18 00:00:00"})
        )
        assert stored == {"mta": "1.2.3.4", "cluster": False, "expire": "2030-03-18 00:00:00"}
        assert ok(client.get("/v1/pauses")) == [stored]
        clock.advance(86400 * 365)
        assert ok(client.get("/v1/pauses")) == []


def test_empty_pause_pauses_everything_and_delete_needs_an_exact_match(
    client: TestClient,
) -> None:
    ok(client.post("/v1/pauses", content=b"", headers=JSON))
    assert ok(client.get("/v1/pauses")) == [{"cluster": False}]
    message = error(client.request("DELETE", "/v1/pauses", json={"domain": "a.test"}), 404)
    assert message == "No pause has domain=a.test."
    ok(client.request("DELETE", "/v1/pauses"))
    assert ok(client.get("/v1/pauses")) == []


def test_documented_errors_listing_and_code_as_string(client: TestClient) -> None:
    for item in DOC_ERRORS:
        ok(client.post("/v1/errors", json=item))
    listed = ok(client.get("/v1/errors"))
    expected = [
        {**e, "cluster": e.get("cluster", False), "code": int(e["code"])} for e in DOC_ERRORS
    ]
    assert [dict(sorted(e.items())) for e in listed] == [dict(sorted(e.items())) for e in expected]
    assert all(isinstance(e["code"], int) for e in listed)


def test_error_in_form_encoding_and_delete_ignores_the_code(client: TestClient) -> None:
    body = b"domain=gmail.com&code=421&extended=4.7.1&description=forced+deferring"
    stored = ok(client.post("/v1/errors", content=body, headers=FORM))
    assert stored == {
        "domain": "gmail.com",
        "cluster": False,
        "code": 421,
        "extended": "4.7.1",
        "description": "forced deferring",
    }
    ok(client.request("DELETE", "/v1/errors", content=body, headers=FORM))
    assert ok(client.get("/v1/errors")) == []


BAD_PAUSES = [
    ({"pool": "p", "mta": "1.2.3.4"}, "pool and mta cannot be given together"),
    ({"domain": "a.test", "ip": "1.2.3.4"}, "domain and ip cannot be given together"),
    ({"mta": "1.2.3"}, "mta must be an IPv4 or IPv6 address"),
    ({"domain": "bad domain"}, "domain must be a domain name"),
    ({"cluster": "maybe"}, "cluster must be true or false"),
    ({"expire": "tomorrow"}, "expire must be a UTC time as YYYY-MM-DD HH:MM:SS"),
    ({"expire": "2001-01-01 00:00:00"}, "is not in the future"),
    ({"domian": "a.test"}, "domian is not a known field"),
    ({"pool": "no spaces"}, "pool may hold only letters, digits"),
]


@pytest.mark.parametrize(("body", "expected"), BAD_PAUSES)
def test_bad_pause_is_400_and_changes_nothing(
    client: TestClient, store: Store, body: dict[str, Any], expected: str
) -> None:
    before = snapshot(store)
    assert expected in error(client.post("/v1/pauses", json=body), 400)
    assert snapshot(store) == before


BAD_ERRORS = [
    ({"domain": "a.test"}, "code is required"),
    ({"code": 600}, "code must be an integer from 200 to 599, not 600"),
    ({"code": "5x0"}, "code must be an integer from 200 to 599"),
    ({"code": 550, "extended": "5.7"}, "extended must be an enhanced status code"),
    ({"code": 550, "extended": "4.7.1"}, "extended 4.7.1 does not agree with code 550"),
    ({"code": 550, "pool": "p", "mta": "1.2.3.4"}, "pool and mta cannot be given together"),
]


@pytest.mark.parametrize(("body", "expected"), BAD_ERRORS)
def test_bad_error_is_400_and_changes_nothing(
    client: TestClient, store: Store, body: dict[str, Any], expected: str
) -> None:
    before = snapshot(store)
    assert expected in error(client.post("/v1/errors", json=body), 400)
    assert snapshot(store) == before


@pytest.mark.parametrize(
    ("body", "headers", "extended"),
    [(DOC_SUPPRESSION_JSON, JSON, "5.1.1"), (DOC_SUPPRESSION_FORM, FORM, "5.5.1")],
)
def test_documented_suppression_json_and_form(
    client: TestClient, body: bytes, headers: dict[str, str], extended: str
) -> None:
    stored = ok(client.post("/v1/suppressions", content=body, headers=headers))
    assert stored == {
        "type": "address",
        "value": "test@example.net",
        "code": 551,
        "extended": extended,
        "description": "Spamtrap",
    }
    ok(
        client.post(
            "/v1/suppressions", json={"type": "domain", "value": "example.com", "code": 550}
        )
    )
    assert ok(client.get("/v1/suppressions")) == [
        stored,
        {"type": "domain", "value": "example.com", "code": 550},
    ]


def test_suppression_value_is_the_key_ignoring_case(client: TestClient) -> None:
    ok(client.post("/v1/suppressions", json={"type": "address", "value": "A@X.test", "code": 550}))
    ok(
        client.post(
            "/v1/suppressions", json={"type": "address", "value": "a@x.test", "code": "551"}
        )
    )
    listed = ok(client.get("/v1/suppressions"))
    assert listed == [{"type": "address", "value": "a@x.test", "code": 551}]
    removed = ok(
        client.request("DELETE", "/v1/suppressions", content=b"value=A%40x.TEST", headers=FORM)
    )
    assert removed == listed[0]
    assert (
        error(client.request("DELETE", "/v1/suppressions", json={"value": "a@x.test"}), 404)
        == "No suppression has value a@x.test."
    )


BAD_SUPPRESSIONS = [
    ({"type": "address", "code": 550}, "value is required"),
    ({"value": "x@y.test", "code": 550}, "type is required"),
    ({"type": "mailbox", "value": "x@y.test", "code": 550}, "type must be 'address' or 'domain'"),
    ({"type": "address", "value": "nobody", "code": 550}, "value must be an e-mail address"),
    ({"type": "domain", "value": "no such", "code": 550}, "value must be a domain name"),
    ({"type": "address", "value": "x@y.test", "code": 451}, "code must be an integer from 500"),
    ({"type": "address", "value": "x@y.test"}, "code is required"),
]


@pytest.mark.parametrize(("body", "expected"), BAD_SUPPRESSIONS)
def test_bad_suppression_is_400_and_changes_nothing(
    client: TestClient, store: Store, body: dict[str, Any], expected: str
) -> None:
    before = snapshot(store)
    assert expected in error(
        client.post("/v1/suppressions", content=json.dumps(body), headers=JSON), 400
    )
    assert snapshot(store) == before
