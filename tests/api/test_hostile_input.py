"""Hostile input gets the family's 4xx, never a 500, and changes nothing: JSON nested too
deeply (in a body or a page token), integers past what a database column holds, NUL and
other control characters, non-ASCII digits, and ids no record can have. Every test runs
on SQLite and on PostgreSQL, where NUL and int4 overflow used to break differently."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import GA, failed, ok, snapshot
from tests.api.virtual_mta_factories import add_ip_address, add_relay_server
from tests.conftest import TEST_SECRET
from vmta.store.store import Store

INT4_MAX = 2_147_483_647
HUGE = [2**31, 3_000_000_000, 2**63, 10**30]


def relay(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "name": "relay-1",
        "source_ip": {"ip": "127.0.0.2", "hostname": "out.example.com"},
        "destination": {"hostname": "smtp.example.com", "port": 25},
        "throttle_limits": {"max_concurrent_connections": 2, "max_messages_per_hour": 120},
    }
    record.update(changes)
    return {"relay_server": record}


def nested(depth: int) -> str:
    """A JSON value of arrays ``depth`` deep."""
    return "[" * depth + "]" * depth


def refused(
    client: TestClient, store: Store, method: str, url: str, code: str, **kw: Any
) -> list[str]:
    before = snapshot(store)
    messages = failed(client.request(method, url, **kw), 400, code)
    assert snapshot(store) == before
    return messages


# ---- nesting -----------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [33, 1000, 100_000])
def test_deeply_nested_greenarrow_body_is_invalid_request(
    client: TestClient, store: Store, depth: int
) -> None:
    body = '{"relay_server": {"name": ' + nested(depth) + "}}"
    for method, url in (
        ("POST", f"{GA}/relay_servers"),
        ("PUT", f"{GA}/relay_servers/{add_relay_server(store, f'r{depth}')}"),
        ("PUT", f"{GA}/virtual_mtas/default"),
    ):
        messages = refused(client, store, method, url, "invalid_request", content=body)
        assert messages == ["The request body is nested deeper than 32 levels."]


def test_nesting_of_32_levels_is_read(client: TestClient, store: Store) -> None:
    # 2 levels of wrapper and object, 30 of arrays: within the bound, so the field is read
    # and refused by its own rule, not for its depth.
    body = '{"relay_server": {"name": ' + nested(30) + "}}"
    messages = refused(
        client, store, "POST", f"{GA}/relay_servers", "validation_failed", content=body
    )
    assert "name must be a string, not an array" in messages


@pytest.mark.parametrize("name", ["deep" + "[" * 50 + "{" * 50, 'quote " ' + "[" * 40 + " ok"])
def test_brackets_inside_strings_do_not_count(client: TestClient, name: str) -> None:
    created = ok(client.post(f"{GA}/relay_servers", json=relay(name=name)))
    assert created["relay_server"]["name"] == name


def test_deeply_nested_mailerq_body_is_400(client: TestClient, store: Store) -> None:
    before = snapshot(store)
    response = client.post(
        "/v1/externalmtas",
        content='{"public_ip": ' + nested(5000) + "}",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json() == {"error": "The request body is nested deeper than 32 levels."}
    assert snapshot(store) == before


def token(data: Any) -> str:
    raw = data if isinstance(data, str) else json.dumps(data)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "page_token",
    [
        token(nested(1000)),
        token('{"p": 1, "n": 1, "a": ' + nested(200) + ', "s": "relay_servers|"}'),
        token({"p": 1, "n": 1, "a": 2**63, "s": "relay_servers|"}),
        token({"p": 1, "n": 1, "a": 2**31, "s": "relay_servers|"}),
        token({"p": 2**63, "n": 1, "a": 1, "s": "relay_servers|"}),
        token({"p": 1, "n": 2**63, "a": 1, "s": "relay_servers|"}),
        "A" * 5000,
    ],
    ids=["nested", "nested-value", "a-2^63", "a-2^31", "p-2^63", "n-2^63", "long"],
)
def test_hostile_page_token_is_invalid_request(client: TestClient, page_token: str) -> None:
    response = client.get(f"{GA}/relay_servers", params={"page_token": page_token})
    assert failed(response, 400, "invalid_request") == [
        "page_token is not a valid page token for this list."
    ]


def test_largest_cursor_is_an_empty_page(client: TestClient, store: Store) -> None:
    add_relay_server(store, "r1")
    page = token({"p": 1, "n": 1, "a": INT4_MAX, "s": "relay_servers|"})
    data = ok(client.get(f"{GA}/relay_servers", params={"page_token": page}))
    assert data["relay_servers"] == []


# ---- integers ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", HUGE)
def test_limit_past_int4_is_validation_failed(client: TestClient, store: Store, value: int) -> None:
    limits = {"max_concurrent_connections": value, "max_messages_per_hour": value}
    messages = refused(
        client,
        store,
        "POST",
        f"{GA}/relay_servers",
        "validation_failed",
        json=relay(throttle_limits=limits),
    )
    assert messages == [
        "throttle_limits.max_concurrent_connections must be an integer from 0 to 2147483647",
        "throttle_limits.max_messages_per_hour must be an integer from 0 to 2147483647",
    ]
    rid = add_relay_server(store, f"r-{value}")
    refused(
        client,
        store,
        "PUT",
        f"{GA}/relay_servers/{rid}",
        "validation_failed",
        json={"relay_server": {"throttle_limits": limits}},
    )
    ip_limits = {"default": {"max_concurrent_connections": value, "max_messages_per_hour": 1}}
    ip_id = add_ip_address(store, f"ip-{value}")
    refused(
        client,
        store,
        "PUT",
        f"{GA}/ip_addresses/{ip_id}",
        "validation_failed",
        json={"ip_address": ip_limits},
    )
    template = {
        "name": "t",
        "default": {"max_concurrent_connections": 1, "max_messages_per_hour": value},
    }
    refused(
        client,
        store,
        "POST",
        f"{GA}/throttling_templates",
        "validation_failed",
        json={"throttling_template": template},
    )


def test_largest_limit_is_stored_on_every_database(client: TestClient) -> None:
    limits = {"max_concurrent_connections": INT4_MAX, "max_messages_per_hour": INT4_MAX}
    created = ok(client.post(f"{GA}/relay_servers", json=relay(throttle_limits=limits)))
    rid = created["relay_server"]["id"]
    fetched = ok(client.get(f"{GA}/relay_servers/{rid}"))["relay_server"]
    assert fetched["throttle_limits"] == limits


@pytest.mark.parametrize("value", HUGE)
def test_reference_past_int4_is_unknown(client: TestClient, store: Store, value: int) -> None:
    messages = refused(
        client,
        store,
        "POST",
        f"{GA}/relay_servers",
        "validation_failed",
        json=relay(redirect={"id": value}),
    )
    assert messages == [f"redirect does not refer to an existing VirtualMTA (id {value})"]
    ip_id = add_ip_address(store, f"ip-{value}")
    messages = refused(
        client,
        store,
        "PUT",
        f"{GA}/ip_addresses/{ip_id}",
        "validation_failed",
        json={"ip_address": {"throttling_template": {"id": value}}},
    )
    assert messages == [
        f"throttling_template does not refer to an existing throttling template (id {value})"
    ]
    messages = refused(
        client,
        store,
        "PUT",
        f"{GA}/virtual_mtas/default",
        "validation_failed",
        json={"virtual_mta": {"id": value}},
    )
    assert messages == [f"virtual_mta does not refer to an existing VirtualMTA (id {value})"]


@pytest.mark.parametrize("raw", [str(2**31), str(2**63), "9" * 30, "%C2%B2", "%EF%BC%91"])
def test_path_id_no_record_can_have_is_404(client: TestClient, raw: str) -> None:
    for path in ("relay_servers", "ip_addresses", "routing_rules", "throttling_templates"):
        failed(client.get(f"{GA}/{path}/{raw}"), 404, "not_found")
        failed(client.delete(f"{GA}/{path}/{raw}"), 404, "not_found")
    failed(client.get(f"{GA}/virtual_mtas/{raw}/used_by"), 404, "not_found")


# ---- control characters ------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["a\x00b", "a\x01b", "a\x7fb", "a\x85b"])
def test_control_characters_in_text_fields_are_refused(
    client: TestClient, store: Store, bad: str
) -> None:
    rule = "must not contain NUL or other control characters"
    destination = {"hostname": f"smtp{bad}x", "port": 25, "username": "u", "password": bad}
    messages = refused(
        client,
        store,
        "POST",
        f"{GA}/relay_servers",
        "validation_failed",
        json=relay(destination=destination, redirect={"name": bad}),
    )
    assert messages == [
        f"destination.hostname {rule}",
        f"destination.password {rule}",
        f"redirect.name {rule}",
    ]
    template = {
        "name": bad,
        "default": {"max_concurrent_connections": 1, "max_messages_per_hour": 1},
    }
    messages = refused(
        client,
        store,
        "POST",
        f"{GA}/throttling_templates",
        "validation_failed",
        json={"throttling_template": template},
    )
    assert messages == [f"name {rule}"]
    refused(
        client,
        store,
        "PUT",
        f"{GA}/virtual_mtas/default",
        "validation_failed",
        json={"virtual_mta": {"name": bad}},
    )


@pytest.mark.parametrize("key", ["name", "ip", "hostname"])
def test_control_characters_in_list_filters_are_invalid_request(
    client: TestClient, key: str
) -> None:
    response = client.get(f"{GA}/ip_addresses", params={key: "a\x00b"})
    assert failed(response, 400, "invalid_request") == [
        f"{key} must be at most 200 characters without control characters."
    ]
    failed(client.get(f"{GA}/ip_addresses", params={key: "x" * 201}), 400, "invalid_request")


def test_nul_in_basic_credentials_is_401(client: TestClient) -> None:
    secret = TEST_SECRET.encode()
    for raw in (b"ad\x00min:" + secret, b"admin:" + secret + b"\x00"):
        value = base64.b64encode(raw).decode()
        response = client.get("/api/queue", headers={"Authorization": f"Basic {value}"})
        assert response.status_code == 401
        assert "WWW-Authenticate" in response.headers


@pytest.mark.parametrize("queue_id", ["%00", "a%00b", "x" * 40, "%C2%B2", "a-b"])
def test_queue_id_no_message_can_have_is_404(client: TestClient, queue_id: str) -> None:
    for method, path in (
        ("GET", f"/api/messages/{queue_id}"),
        ("POST", f"/api/messages/{queue_id}/retry"),
        ("DELETE", f"/api/messages/{queue_id}"),
    ):
        response = client.request(method, path)
        assert response.status_code == 404, (method, path, response.text)
        assert set(response.json()) == {"error"}


@pytest.mark.parametrize(
    "limit", ["\u00b2", "\u0661", "\uff11", "0", "10001", "9" * 40, "-1", "1e3", ""]
)
def test_message_list_limit_must_be_ascii_digits_in_range(client: TestClient, limit: str) -> None:
    response = client.get("/api/messages", params={"limit": limit})
    assert response.status_code == 400, response.text
    assert response.json() == {"error": "limit must be an integer from 1 to 10000."}
