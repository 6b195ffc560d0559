"""Relay servers: every example of seed 001 and every rule of contract §2.5."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import GA, failed, ok, snapshot, update_patch, validation_table
from vmta.domain.config.virtual_mta import IpAddress
from vmta.store.store import Store
from vmta.store.virtual_mtas import VirtualMtaRepository

SEED_CREATE: dict[str, Any] = {
    "relay_server": {
        "name": "new-relay-server",
        "source_ip": {"ip": "127.0.0.2", "hostname": "outgoing-hostname.com"},
        "destination": {
            "hostname": "destination-hostname.com",
            "port": 25,
            "username": "myusername",
            "password": "mysecret",
        },
        "throttle_limits": {"max_concurrent_connections": 2, "max_messages_per_hour": 120},
        "redirect": {"name": "ipaddr-1"},
    }
}

SEED_UPDATE: dict[str, Any] = {
    "relay_server": {
        "name": "updated-relay-server",
        "source_ip": {"ip": "127.0.0.7", "hostname": "updated-outgoing-hostname.com"},
        "destination": {
            "hostname": "updated-destination-hostname.com",
            "port": 1025,
            "username": "updated-myusername",
            "password": "updated-mysecret",
        },
        "throttle_limits": {"max_concurrent_connections": 5, "max_messages_per_hour": 500},
        "redirect": None,
    }
}


def add_ip_address(store: Store, name: str, ip: str = "127.0.0.3") -> int:
    with store.write() as conn:
        repo = VirtualMtaRepository(conn)
        return repo.insert(
            repo.prepare(IpAddress(name=name, ip=ip, hostname="mta.example.com"), own_id=None)
        )


def minimal(name: str = "relay-1", **changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "name": name,
        "source_ip": {"ip": "127.0.0.2", "hostname": "out.example.com"},
        "destination": {"hostname": "smtp.example.com", "port": 25},
        "throttle_limits": {"max_concurrent_connections": 2, "max_messages_per_hour": 120},
    }
    record.update(changes)
    return {"relay_server": record}


def create(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = ok(client.post(f"{GA}/relay_servers", json=body))["relay_server"]
    return record


def test_seed_create_example_gives_the_documented_record(client: TestClient, store: Store) -> None:
    ip_id = add_ip_address(store, "ipaddr-1")
    record = create(client, SEED_CREATE)
    expected = copy.deepcopy(SEED_CREATE["relay_server"])
    expected["redirect"] = {"type": "ip_address", "id": ip_id, "name": "ipaddr-1"}
    assert isinstance(record.pop("id"), int)
    assert record == expected
    assert list(record) == ["name", "source_ip", "destination", "throttle_limits", "redirect"]


def test_seed_get_example_shape(client: TestClient) -> None:
    created = create(client, minimal("relay-1"))
    data = ok(client.get(f"{GA}/relay_servers/{created['id']}"))
    assert data == {"relay_server": created}
    assert set(created["destination"]) == {"hostname", "port", "username", "password"}
    assert created["destination"]["username"] is None and created["redirect"] is None


def test_seed_list_example_shape(client: TestClient) -> None:
    ids = [create(client, minimal(f"relay-{i}"))["id"] for i in (1, 2, 3)]
    data = ok(client.get(f"{GA}/relay_servers"))
    assert data == {
        "relay_servers": [
            {"id": i, "name": f"relay-{n}"} for n, i in zip((1, 2, 3), ids, strict=True)
        ],
        "pagination": {
            "page": 0,
            "per_page": 100,
            "num_pages": 1,
            "num_records": 3,
            "next_page_token": None,
        },
    }


def test_seed_update_example(client: TestClient) -> None:
    created = create(client, minimal("relay-1"))
    data = ok(client.put(f"{GA}/relay_servers/{created['id']}", json=SEED_UPDATE))
    expected = {"id": created["id"], **SEED_UPDATE["relay_server"]}
    assert data == {"relay_server": expected}
    assert ok(client.get(f"{GA}/relay_servers/{created['id']}")) == {"relay_server": expected}


def test_seed_delete_example(client: TestClient) -> None:
    created = create(client, minimal("relay-1"))
    assert ok(client.delete(f"{GA}/relay_servers/{created['id']}")) == {}
    failed(client.get(f"{GA}/relay_servers/{created['id']}"), 404, "not_found")


def test_ids_are_never_reused_after_delete(client: TestClient) -> None:
    first = create(client, minimal("relay-1"))
    ok(client.delete(f"{GA}/relay_servers/{first['id']}"))
    second = create(client, minimal("relay-1"))
    assert second["id"] > first["id"]


# Every rule: a request that breaks it gets validation_failed naming the field, and the
# store is unchanged.
BROKEN: list[tuple[str, dict[str, Any], str]] = [
    ("name missing", {"name": None}, "name"),
    ("name empty", {"name": ""}, "name"),
    ("name too long", {"name": "x" * 201}, "name"),
    ("name non-ascii", {"name": "relé"}, "name"),
    ("name control char", {"name": "a\tb"}, "name"),
    ("name comma", {"name": "a,b"}, "name"),
    ("name pound", {"name": "a#b"}, "name"),
    ("name at-sign", {"name": "a@b"}, "name"),
    ("name leading space", {"name": " a"}, "name"),
    ("name trailing space", {"name": "a "}, "name"),
    ("name integer", {"name": "42"}, "name"),
    ("name not string", {"name": 42}, "name"),
    ("source_ip missing", {"source_ip": None}, "source_ip"),
    ("source_ip not hash", {"source_ip": "127.0.0.2"}, "source_ip"),
    ("source_ip.ip missing", {"source_ip": {"hostname": "a.com"}}, "source_ip.ip"),
    ("source_ip.ip not ipv4", {"source_ip": {"ip": "::1", "hostname": "a.com"}}, "source_ip.ip"),
    ("source_ip.ip junk", {"source_ip": {"ip": "1.2.3", "hostname": "a.com"}}, "source_ip.ip"),
    ("source_ip.hostname missing", {"source_ip": {"ip": "1.2.3.4"}}, "source_ip.hostname"),
    (
        "source_ip.hostname bad start",
        {"source_ip": {"ip": "1.2.3.4", "hostname": "-a.com"}},
        "source_ip.hostname",
    ),
    (
        "source_ip.hostname bad end",
        {"source_ip": {"ip": "1.2.3.4", "hostname": "a.com."}},
        "source_ip.hostname",
    ),
    (
        "source_ip.hostname too long",
        {"source_ip": {"ip": "1.2.3.4", "hostname": "a" * 201}},
        "source_ip.hostname",
    ),
    ("destination missing", {"destination": None}, "destination"),
    ("destination.hostname missing", {"destination": {"port": 25}}, "destination.hostname"),
    (
        "destination.hostname bad",
        {"destination": {"hostname": "_x", "port": 25}},
        "destination.hostname",
    ),
    ("destination.port missing", {"destination": {"hostname": "a.com"}}, "destination.port"),
    (
        "destination.port zero",
        {"destination": {"hostname": "a.com", "port": 0}},
        "destination.port",
    ),
    (
        "destination.port too big",
        {"destination": {"hostname": "a.com", "port": 65536}},
        "destination.port",
    ),
    (
        "destination.port string",
        {"destination": {"hostname": "a.com", "port": "25"}},
        "destination.port",
    ),
    (
        "destination.port float",
        {"destination": {"hostname": "a.com", "port": 25.5}},
        "destination.port",
    ),
    (
        "destination.username too long",
        {"destination": {"hostname": "a.com", "port": 25, "username": "u" * 201}},
        "destination.username",
    ),
    (
        "destination.password too long",
        {"destination": {"hostname": "a.com", "port": 25, "password": "p" * 201}},
        "destination.password",
    ),
    (
        "destination.password not string",
        {"destination": {"hostname": "a.com", "port": 25, "password": 7}},
        "destination.password",
    ),
    ("throttle_limits missing", {"throttle_limits": None}, "throttle_limits"),
    (
        "max_concurrent_connections negative",
        {"throttle_limits": {"max_concurrent_connections": -1, "max_messages_per_hour": 1}},
        "throttle_limits.max_concurrent_connections",
    ),
    (
        "max_messages_per_hour missing",
        {"throttle_limits": {"max_concurrent_connections": 1}},
        "throttle_limits.max_messages_per_hour",
    ),
    (
        "max_messages_per_hour string",
        {"throttle_limits": {"max_concurrent_connections": 1, "max_messages_per_hour": "5"}},
        "throttle_limits.max_messages_per_hour",
    ),
    (
        "max_messages_per_hour boolean",
        {"throttle_limits": {"max_concurrent_connections": 1, "max_messages_per_hour": True}},
        "throttle_limits.max_messages_per_hour",
    ),
    ("unknown field", {"colour": "blue"}, "colour"),
    (
        "unknown nested field",
        {"destination": {"hostname": "a.com", "port": 25, "tls": True}},
        "destination.tls",
    ),
    ("redirect unknown id", {"redirect": {"id": 9999}}, "redirect"),
    ("redirect unknown name", {"redirect": {"name": "nobody"}}, "redirect"),
    ("redirect not hash", {"redirect": 5}, "redirect"),
    ("redirect empty", {"redirect": {}}, "redirect"),
]

BROKEN_BY_DATABASE = validation_table(
    BROKEN, store_rows=["redirect unknown id", "redirect unknown name"]
)


@pytest.mark.parametrize(("label", "change", "field"), BROKEN_BY_DATABASE)
def test_each_rule_refuses_create(
    client: TestClient, store: Store, label: str, change: dict[str, Any], field: str
) -> None:
    body = minimal("relay-x")
    for key, value in change.items():
        if value is None and key != "redirect":
            body["relay_server"].pop(key)
        else:
            body["relay_server"][key] = value
    before = snapshot(store)
    messages = failed(client.post(f"{GA}/relay_servers", json=body), 400, "validation_failed")
    assert any(m.startswith(field + " ") for m in messages), messages
    assert snapshot(store) == before


@pytest.mark.parametrize(("label", "change", "field"), BROKEN_BY_DATABASE)
def test_each_rule_refuses_update(
    client: TestClient, store: Store, label: str, change: dict[str, Any], field: str
) -> None:
    created = create(client, minimal("relay-x"))
    patch = update_patch(label, change, field)
    before = snapshot(store)
    response = client.put(f"{GA}/relay_servers/{created['id']}", json={"relay_server": patch})
    messages = failed(response, 400, "validation_failed")
    assert any(m.startswith(field + " ") for m in messages), messages
    assert snapshot(store) == before


def test_all_problems_are_reported_together(client: TestClient) -> None:
    body = {
        "relay_server": {
            "name": "a,b",
            "source_ip": {"ip": "x", "hostname": "-"},
            "destination": {"hostname": "ok.com", "port": 0},
            "throttle_limits": {"max_concurrent_connections": -1, "max_messages_per_hour": "1"},
            "bogus": 1,
        }
    }
    messages = failed(client.post(f"{GA}/relay_servers", json=body), 400, "validation_failed")
    fields = {m.split(" ")[0] for m in messages}
    assert fields >= {
        "name",
        "source_ip.ip",
        "source_ip.hostname",
        "destination.port",
        "throttle_limits.max_concurrent_connections",
        "throttle_limits.max_messages_per_hour",
        "bogus",
    }


def test_names_are_unique_ignoring_case_across_types(client: TestClient, store: Store) -> None:
    add_ip_address(store, "Shared-Name")
    before = snapshot(store)
    messages = failed(
        client.post(f"{GA}/relay_servers", json=minimal("shared-NAME")), 400, "validation_failed"
    )
    assert messages[0].startswith("name ")
    assert snapshot(store) == before


def test_ids_are_one_sequence_across_types(client: TestClient, store: Store) -> None:
    ip_id = add_ip_address(store, "ipaddr-1")
    relay_id = create(client, minimal("relay-1"))["id"]
    assert relay_id > ip_id
    failed(client.get(f"{GA}/relay_servers/{ip_id}"), 404, "not_found")


def test_create_defaults(client: TestClient) -> None:
    record = create(client, minimal("relay-1"))
    assert record["destination"]["username"] is None
    assert record["destination"]["password"] is None
    assert record["redirect"] is None


def test_read_only_fields_are_ignored(client: TestClient, store: Store) -> None:
    ip_id = add_ip_address(store, "ipaddr-1")
    body = minimal("relay-1", id=12345, redirect={"type": "routing_rule", "id": ip_id})
    record = create(client, body)
    assert record["id"] != 12345
    assert record["redirect"] == {"type": "ip_address", "id": ip_id, "name": "ipaddr-1"}


def test_redirect_id_wins_over_name(client: TestClient, store: Store) -> None:
    first = add_ip_address(store, "ipaddr-1")
    add_ip_address(store, "ipaddr-2", ip="127.0.0.4")
    record = create(client, minimal("relay-1", redirect={"id": first, "name": "ipaddr-2"}))
    assert record["redirect"]["id"] == first


def test_put_changes_only_given_fields(client: TestClient) -> None:
    created = create(client, minimal("relay-1"))
    data = ok(
        client.put(
            f"{GA}/relay_servers/{created['id']}",
            json={
                "relay_server": {"destination": {"port": 2526, "username": "u", "password": "p"}}
            },
        )
    )["relay_server"]
    expected = copy.deepcopy(created)
    expected["destination"].update(port=2526, username="u", password="p")
    assert data == expected
    data = ok(
        client.put(
            f"{GA}/relay_servers/{created['id']}",
            json={"relay_server": {"destination": {"username": None}}},
        )
    )["relay_server"]
    assert data["destination"]["username"] is None
    assert data["destination"]["password"] == "p"


def test_put_redirect_by_name_then_null_clears(client: TestClient, store: Store) -> None:
    ip_id = add_ip_address(store, "ipaddr-1")
    created = create(client, minimal("relay-1"))
    url = f"{GA}/relay_servers/{created['id']}"
    data = ok(client.put(url, json={"relay_server": {"redirect": {"name": "IPADDR-1"}}}))
    assert data["relay_server"]["redirect"] == {
        "type": "ip_address",
        "id": ip_id,
        "name": "ipaddr-1",
    }
    data = ok(client.put(url, json={"relay_server": {"redirect": None}}))
    assert data["relay_server"]["redirect"] is None


def test_redirect_to_itself_is_refused(client: TestClient, store: Store) -> None:
    created = create(client, minimal("relay-1"))
    before = snapshot(store)
    messages = failed(
        client.put(
            f"{GA}/relay_servers/{created['id']}",
            json={"relay_server": {"redirect": {"id": created["id"]}}},
        ),
        400,
        "validation_failed",
    )
    assert messages[0].startswith("redirect ")
    assert snapshot(store) == before


def test_redirect_loop_is_refused(client: TestClient, store: Store) -> None:
    a = create(client, minimal("relay-a"))
    b = create(client, minimal("relay-b", redirect={"id": a["id"]}))
    before = snapshot(store)
    messages = failed(
        client.put(
            f"{GA}/relay_servers/{a['id']}", json={"relay_server": {"redirect": {"id": b["id"]}}}
        ),
        400,
        "validation_failed",
    )
    assert "relay-a -> relay-b -> relay-a" in messages[0]
    assert snapshot(store) == before


def test_delete_refused_while_redirected_to(client: TestClient, store: Store) -> None:
    a = create(client, minimal("relay-a"))
    create(client, minimal("relay-b", redirect={"id": a["id"]}))
    create(client, minimal("relay-c", redirect={"name": "relay-a"}))
    before = snapshot(store)
    messages = failed(client.delete(f"{GA}/relay_servers/{a['id']}"), 400, "validation_failed")
    assert len(messages) == 2
    assert "relay-b" in messages[0] and "relay-c" in messages[1]
    assert snapshot(store) == before


def test_not_found_and_wrong_type(client: TestClient, store: Store) -> None:
    ip_id = add_ip_address(store, "ipaddr-1")
    for url in (f"{GA}/relay_servers/999", f"{GA}/relay_servers/{ip_id}", f"{GA}/relay_servers/x"):
        failed(client.get(url), 404, "not_found")
        failed(client.put(url, json=minimal()), 404, "not_found")
        failed(client.delete(url), 404, "not_found")


@pytest.mark.one_database  # request validation only: the database adds nothing
@pytest.mark.parametrize(
    "raw",
    [b"not json", b"[]", b'"x"', b'{"relay_servers": {}}', b'{"relay_server": 5}', b""],
)
def test_malformed_bodies_are_invalid_request(client: TestClient, store: Store, raw: bytes) -> None:
    before = snapshot(store)
    failed(
        client.post(
            f"{GA}/relay_servers", content=raw, headers={"Content-Type": "application/json"}
        ),
        400,
        "invalid_request",
    )
    assert snapshot(store) == before


def test_method_not_supported(client: TestClient) -> None:
    failed(client.patch(f"{GA}/relay_servers"), 405, "invalid_request")
    failed(client.post(f"{GA}/relay_servers/1", json=minimal()), 405, "invalid_request")


def test_unknown_path_under_prefix(client: TestClient) -> None:
    failed(client.get(f"{GA}/no_such_thing"), 404, "not_found")
