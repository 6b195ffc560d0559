"""MailerQ REST API v1 pools and pool addresses: every request shape of MailerQ's "Pools"
page, in JSON and form encoding, and every rule; bad input changes nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import snapshot
from vmta.store.store import Store

JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}

# MailerQ's documented bodies, byte for byte.
DOC_POOL_JSON = b"""{
    "name": "dedicated",
    "description": "Dedicated Addresses"
}"""
DOC_POOL_FORM = b"name=dedicated&description=Dedicated+Addresses"


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


def error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    message: str = body["error"]
    assert message.endswith(".")
    return message


@pytest.mark.parametrize(("body", "headers"), [(DOC_POOL_JSON, JSON), (DOC_POOL_FORM, FORM)])
def test_documented_pool_create_json_and_form(
    client: TestClient, body: bytes, headers: dict[str, str]
) -> None:
    stored = ok(client.post("/v1/pools", content=body, headers=headers))
    assert stored == {"name": "dedicated", "description": "Dedicated Addresses"}
    assert ok(client.get("/v1/pools")) == [stored]


def test_documented_listing_shape(client: TestClient) -> None:
    ok(client.post("/v1/pools", json={"name": "sharedpool1"}))
    ok(client.post("/v1/pools", content=DOC_POOL_JSON, headers=JSON))
    assert ok(client.get("/v1/pools")) == [
        {"name": "sharedpool1"},
        {"name": "dedicated", "description": "Dedicated Addresses"},
    ]


def test_post_again_updates_the_description_in_place(client: TestClient) -> None:
    ok(client.post("/v1/pools", json={"name": "a"}))
    ok(client.post("/v1/pools", json={"name": "b"}))
    ok(client.post("/v1/pools", json={"name": "a", "description": "now described"}))
    assert ok(client.get("/v1/pools")) == [
        {"name": "a", "description": "now described"},
        {"name": "b"},
    ]


@pytest.mark.parametrize("field", ["ip", "localip"])
def test_poolips_accepts_ip_or_localip_and_writes_both(client: TestClient, field: str) -> None:
    ok(client.post("/v1/pools", json={"name": "sharedpool1"}))
    added = ok(client.post("/v1/poolips", json={"name": "sharedpool1", field: "127.0.0.1"}))
    assert added == {"name": "sharedpool1", "localip": "127.0.0.1", "ip": "127.0.0.1"}
    form = f"name=sharedpool1&{field}=192.168.1.1".encode()
    ok(client.post("/v1/poolips", content=form, headers=FORM))
    assert ok(client.get("/v1/poolips?name=sharedpool1")) == [
        {"name": "sharedpool1", "localip": "127.0.0.1", "ip": "127.0.0.1"},
        {"name": "sharedpool1", "localip": "192.168.1.1", "ip": "192.168.1.1"},
    ]


def test_an_address_is_in_one_pool_adding_it_elsewhere_moves_it(client: TestClient) -> None:
    for name in ("one", "two"):
        ok(client.post("/v1/pools", json={"name": name}))
    ok(client.post("/v1/poolips", json={"name": "one", "ip": "2001:DB8::0001"}))
    ok(client.post("/v1/poolips", json={"name": "two", "localip": "2001:db8::1"}))
    assert ok(client.get("/v1/poolips?name=one")) == []
    assert [m["ip"] for m in ok(client.get("/v1/poolips?name=two"))] == ["2001:db8::1"]


def test_delete_member_json_form_and_query(client: TestClient) -> None:
    ok(client.post("/v1/pools", json={"name": "p"}))
    for ip in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        ok(client.post("/v1/poolips", json={"name": "p", "ip": ip}))
    ok(client.request("DELETE", "/v1/poolips", json={"name": "p", "ip": "10.0.0.1"}))
    ok(client.request("DELETE", "/v1/poolips", content=b"name=p&localip=10.0.0.2", headers=FORM))
    ok(client.delete("/v1/poolips?name=p&ip=10.0.0.3"))
    assert ok(client.get("/v1/poolips?name=p")) == []
    message = error(client.delete("/v1/poolips?name=p&ip=10.0.0.3"), 404)
    assert "10.0.0.3 is not in pool p" in message


def test_delete_pool_removes_its_members(client: TestClient, store: Store) -> None:
    ok(client.post("/v1/pools", content=DOC_POOL_FORM, headers=FORM))
    ok(client.post("/v1/poolips", json={"name": "dedicated", "ip": "10.0.0.1"}))
    deleted = ok(client.request("DELETE", "/v1/pools", content=b"name=dedicated", headers=FORM))
    assert deleted == {"name": "dedicated", "description": "Dedicated Addresses"}
    assert ok(client.get("/v1/pools")) == []
    assert error(client.get("/v1/poolips?name=dedicated"), 404) == "No pool is named dedicated."
    assert snapshot(store)["mq_pool_ips"] == []
    error(client.request("DELETE", "/v1/pools", json={"name": "dedicated"}), 404)


def test_unknown_pool_is_404_for_poolips(client: TestClient, store: Store) -> None:
    before = snapshot(store)
    error(client.post("/v1/poolips", json={"name": "nope", "ip": "10.0.0.1"}), 404)
    error(client.get("/v1/poolips?name=nope"), 404)
    assert snapshot(store) == before


BAD = [
    ("/v1/pools", {}, "name is required"),
    ("/v1/pools", {"name": "has space"}, "name may hold only letters, digits"),
    ("/v1/pools", {"name": "x", "colour": "red"}, "colour is not a known field"),
    ("/v1/pools", {"name": 7}, "name must be a string, not a number"),
    ("/v1/poolips", {"name": "p"}, "ip (or localip) is required"),
    ("/v1/poolips", {"name": "p", "ip": "10.0.0.300"}, "ip must be an IPv4 or IPv6 address"),
    (
        "/v1/poolips",
        {"name": "p", "ip": "10.0.0.1", "localip": "10.0.0.2"},
        "ip and localip name different addresses",
    ),
]


@pytest.mark.parametrize(("path", "body", "expected"), BAD)
def test_bad_input_is_400_and_changes_nothing(
    client: TestClient, store: Store, path: str, body: dict[str, Any], expected: str
) -> None:
    ok(client.post("/v1/pools", json={"name": "p"}))
    before = snapshot(store)
    assert expected in error(client.post(path, json=body), 400)
    assert snapshot(store) == before


def test_poolips_get_needs_a_name(client: TestClient) -> None:
    assert "name is required" in error(client.get("/v1/poolips"), 400)


def test_other_content_type_and_method(client: TestClient) -> None:
    error(client.post("/v1/pools", content=b"name=x", headers={"Content-Type": "text/plain"}), 415)
    response = client.put("/v1/pools", json={"name": "x"})
    assert response.status_code == 405 and response.headers["Allow"] == "GET, POST, DELETE"
