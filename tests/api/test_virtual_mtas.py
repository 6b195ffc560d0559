"""VirtualMTAs across types (contract §2.9): the mixed list, used_by, the default VirtualMTA."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import GA, failed, ok, snapshot
from tests.api.virtual_mta_factories import (
    add_ip_address,
    add_relay_server,
    add_routing_rule,
    distribution,
    entry,
    rule_body,
)
from vmta.store.store import Store

URL = f"{GA}/virtual_mtas"
DEFAULT = f"{URL}/default"


def item(kind: str, vmta_id: int, name: str) -> dict[str, Any]:
    return {"type": kind, "id": vmta_id, "name": name}


def add_mixed(store: Store, count: int) -> list[dict[str, Any]]:
    """``count`` VirtualMTAs, the types taking turns; returns their expected list items."""
    made: list[dict[str, Any]] = []
    for n in range(count):
        name = f"vmta-{n:02d}"
        if n % 3 == 0:
            made.append(item("ip_address", add_ip_address(store, name), name))
        elif n % 3 == 1:
            made.append(item("relay_server", add_relay_server(store, name), name))
        else:
            made.append(item("routing_rule", add_routing_rule(store, name, made[0]["id"]), name))
    return made


# ---- the list ------------------------------------------------------------------------------


def test_list_holds_every_type_in_id_order(client: TestClient, store: Store) -> None:
    expected = add_mixed(store, 5)
    assert ok(client.get(URL)) == {
        "virtual_mtas": expected,
        "pagination": {
            "page": 0,
            "per_page": 100,
            "num_pages": 1,
            "num_records": 5,
            "next_page_token": None,
        },
    }
    # The per-type lists hold only their own type.
    relays = ok(client.get(f"{GA}/relay_servers"))["relay_servers"]
    assert relays == [
        {"id": i["id"], "name": i["name"]} for i in expected if i["type"] == "relay_server"
    ]


def test_empty_list(client: TestClient) -> None:
    data = ok(client.get(URL))
    assert data["virtual_mtas"] == []
    assert data["pagination"]["num_records"] == 0 and data["pagination"]["num_pages"] == 0


def test_page_tokens_walk_the_mixed_list(client: TestClient, store: Store) -> None:
    expected = add_mixed(store, 8)
    data = ok(client.get(URL, params={"per_page": 3}))
    seen = list(data["virtual_mtas"])
    pages = [data["pagination"]]
    while data["pagination"]["next_page_token"] is not None:
        data = ok(client.get(URL, params={"page_token": data["pagination"]["next_page_token"]}))
        seen += data["virtual_mtas"]
        pages.append(data["pagination"])
    assert seen == expected
    assert [p["page"] for p in pages] == [0, 1, 2]
    assert all(p["num_records"] == 8 and p["num_pages"] == 3 for p in pages)
    # page numbers agree with tokens
    assert ok(client.get(URL, params={"per_page": 3, "page": 2}))["virtual_mtas"] == expected[6:]
    assert ok(client.get(URL, params={"page": 1}))["virtual_mtas"] == []


def test_bad_paging_parameters(client: TestClient, store: Store) -> None:
    add_mixed(store, 5)  # two of them relay servers
    relay_token = ok(client.get(f"{GA}/relay_servers", params={"per_page": 1}))["pagination"][
        "next_page_token"
    ]
    assert relay_token is not None
    for params in ({"page_token": relay_token}, {"page_token": "!!"}, {"per_page": "0"}):
        failed(client.get(URL, params=params), 400, "invalid_request")


LIMITS = {"max_concurrent_connections": 1, "max_messages_per_hour": 10}


# ---- used_by -------------------------------------------------------------------------------


def test_used_by_names_every_user(client: TestClient, store: Store) -> None:
    target = add_relay_server(store, "target")
    ip = add_ip_address(store, "ip-redirecting", redirect=target)
    relay = add_relay_server(store, "relay-redirecting", redirect=target)
    rule = add_routing_rule(store, "rule-listing", target)
    ok(client.put(DEFAULT, json={"virtual_mta": {"id": target}}))
    data = ok(client.get(f"{URL}/{target}/used_by"))
    assert data["pagination"]["num_records"] == 4
    assert data == {
        "pagination": data["pagination"],
        "used_by": [
            item("ip_address", ip, "ip-redirecting"),
            item("relay_server", relay, "relay-redirecting"),
            item("routing_rule", rule, "rule-listing"),
            {"type": "default_virtual_mta", "id": None, "name": None},
        ],
    }


def test_used_by_follows_updates(client: TestClient, store: Store) -> None:
    ip = add_ip_address(store, "ip-1")
    relay = add_relay_server(store, "relay-1")
    assert ok(client.get(f"{URL}/{relay}/used_by"))["used_by"] == []
    rule = ok(
        client.post(
            f"{GA}/routing_rules",
            json=rule_body("rule-1", default=distribution(entry({"id": relay}))),
        )
    )["routing_rule"]
    assert ok(client.get(f"{URL}/{relay}/used_by"))["used_by"] == [
        item("routing_rule", rule["id"], "rule-1")
    ]
    ok(
        client.put(
            f"{GA}/routing_rules/{rule['id']}",
            json={"routing_rule": {"default": {"deliver_through": [entry({"id": ip})]}}},
        )
    )
    assert ok(client.get(f"{URL}/{relay}/used_by"))["used_by"] == []
    assert ok(client.get(f"{URL}/{ip}/used_by"))["used_by"] == [
        item("routing_rule", rule["id"], "rule-1")
    ]


def test_used_by_pages_through_250_users_by_token(client: TestClient, store: Store) -> None:
    target = add_relay_server(store, "target")
    users = [add_relay_server(store, f"user-{i:03d}", redirect=target) for i in range(250)]
    ok(client.put(DEFAULT, json={"virtual_mta": {"id": target}}))
    seen: list[Any] = []
    data = ok(client.get(f"{URL}/{target}/used_by"))
    pages = [data["pagination"]]
    seen += data["used_by"]
    while data["pagination"]["next_page_token"]:
        token = data["pagination"]["next_page_token"]
        data = ok(client.get(f"{URL}/{target}/used_by", params={"page_token": token}))
        pages.append(data["pagination"])
        seen += data["used_by"]
    assert [u["id"] for u in seen] == [*users, None]
    assert seen[-1]["type"] == "default_virtual_mta"
    assert [p["page"] for p in pages] == [0, 1, 2]
    assert all(p["num_records"] == 251 and p["num_pages"] == 3 for p in pages)
    by_number = ok(client.get(f"{URL}/{target}/used_by", params={"page": 2}))
    assert by_number["used_by"] == seen[200:]
    past = ok(client.get(f"{URL}/{target}/used_by", params={"page": 3}))
    assert past["used_by"] == []


@pytest.mark.parametrize("token", ["not-a-token", "eyJ4IjoxfQ"])
def test_used_by_refuses_a_malformed_page_token(
    client: TestClient, store: Store, token: str
) -> None:
    target = add_relay_server(store, "target")
    failed(
        client.get(f"{URL}/{target}/used_by", params={"page_token": token}), 400, "invalid_request"
    )
    add_relay_server(store, "second")
    # A token of another list is refused as well.
    list_token = ok(client.get(f"{GA}/relay_servers", params={"per_page": 1}))["pagination"]
    failed(
        client.get(f"{URL}/{target}/used_by", params={"page_token": list_token["next_page_token"]}),
        400,
        "invalid_request",
    )


def test_every_list_filters_by_name_ignoring_case(client: TestClient, store: Store) -> None:
    ip = add_ip_address(store, "Ip-One")
    add_ip_address(store, "ip-two")
    relay = add_relay_server(store, "Relay-One")
    add_relay_server(store, "relay-two")
    rule = add_routing_rule(store, "Rule-One", ip)
    add_routing_rule(store, "rule-two", ip)
    template = ok(
        client.post(
            f"{GA}/throttling_templates",
            json={"throttling_template": {"name": "Tpl-One", "default": LIMITS}},
        )
    )["throttling_template"]["id"]
    ok(
        client.post(
            f"{GA}/throttling_templates",
            json={"throttling_template": {"name": "tpl-two", "default": LIMITS}},
        )
    )
    cases = [
        ("ip_addresses", "IP-ONE", ip),
        ("relay_servers", "relay-one", relay),
        ("routing_rules", "RULE-one", rule),
        ("throttling_templates", "TPL-ONE", template),
        ("virtual_mtas", "rule-ONE", rule),
    ]
    for plural, name, wanted in cases:
        data = ok(client.get(f"{GA}/{plural}", params={"name": name}))
        assert [r["id"] for r in data[plural]] == [wanted], plural
        assert data["pagination"]["num_records"] == 1


def test_hostname_filter_ignores_case(client: TestClient, store: Store) -> None:
    ip = add_ip_address(store, "ip-1")  # hostname mta.example.com
    data = ok(client.get(f"{GA}/ip_addresses", params={"hostname": "MTA.Example.COM"}))
    assert [r["id"] for r in data["ip_addresses"]] == [ip]


@pytest.mark.parametrize("raw_id", ["999999", "abc", "-1", "default"])
def test_used_by_of_an_unknown_id_is_not_found(client: TestClient, raw_id: str) -> None:
    failed(client.get(f"{URL}/{raw_id}/used_by"), 404, "not_found")


# ---- the default VirtualMTA ----------------------------------------------------------------


def test_default_is_null_until_set(client: TestClient) -> None:
    assert ok(client.get(DEFAULT)) == {"virtual_mta": None}


def test_default_set_by_id_by_name_and_cleared(client: TestClient, store: Store) -> None:
    ip = add_ip_address(store, "ip-1")
    rule = add_routing_rule(store, "Rule-1", ip)
    expected_ip = {"virtual_mta": item("ip_address", ip, "ip-1")}
    assert ok(client.put(DEFAULT, json={"virtual_mta": {"id": ip}})) == expected_ip
    assert ok(client.get(DEFAULT)) == expected_ip
    expected_rule = {"virtual_mta": item("routing_rule", rule, "Rule-1")}
    assert ok(client.put(DEFAULT, json={"virtual_mta": {"name": "rule-1"}})) == expected_rule
    assert ok(client.get(DEFAULT)) == expected_rule
    # What GET answered may be sent back; the id wins over the name.
    echoed = {"virtual_mta": {"type": "routing_rule", "id": ip, "name": "Rule-1"}}
    assert ok(client.put(DEFAULT, json=echoed)) == expected_ip
    assert ok(client.put(DEFAULT, json={"virtual_mta": None})) == {"virtual_mta": None}
    assert ok(client.get(DEFAULT)) == {"virtual_mta": None}
    assert ok(client.put(DEFAULT, json={"virtual_mta": None})) == {"virtual_mta": None}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"virtual_mta": {"id": 999999}}, "virtual_mta"),
        ({"virtual_mta": {"name": "nobody"}}, "virtual_mta"),
        ({"virtual_mta": {}}, "virtual_mta"),
        ({"virtual_mta": {"id": "1"}}, "virtual_mta.id"),
        ({"virtual_mta": {"name": 1}}, "virtual_mta.name"),
        ({"virtual_mta": {"name": "ip-1", "colour": "red"}}, "virtual_mta.colour"),
    ],
)
def test_bad_default_is_refused(
    client: TestClient, store: Store, body: dict[str, Any], field: str
) -> None:
    ip = add_ip_address(store, "ip-1")
    ok(client.put(DEFAULT, json={"virtual_mta": {"id": ip}}))
    before = snapshot(store)
    messages = failed(client.put(DEFAULT, json=body), 400, "validation_failed")
    assert any(m.startswith(field + " ") for m in messages), messages
    assert snapshot(store) == before


@pytest.mark.one_database  # request validation only: the database adds nothing
@pytest.mark.parametrize(
    "raw",
    [b"nope", b"null", b"[]", b"{}", b'{"virtual_mta": 5}', b'{"virtual_mta": null, "x": 1}'],
)
def test_malformed_default_bodies_are_invalid_request(
    client: TestClient, store: Store, raw: bytes
) -> None:
    before = snapshot(store)
    response = client.put(DEFAULT, content=raw, headers={"Content-Type": "application/json"})
    failed(response, 400, "invalid_request")
    assert snapshot(store) == before


def test_the_default_cannot_be_deleted(client: TestClient, store: Store) -> None:
    relay = add_relay_server(store, "relay-1")
    ok(client.put(DEFAULT, json={"virtual_mta": {"id": relay}}))
    before = snapshot(store)
    messages = failed(client.delete(f"{GA}/relay_servers/{relay}"), 400, "validation_failed")
    assert messages == ["it is the default VirtualMTA; set another default first"]
    assert snapshot(store) == before
    ok(client.put(DEFAULT, json={"virtual_mta": None}))
    assert ok(client.delete(f"{GA}/relay_servers/{relay}")) == {}


def test_a_default_rule_cannot_be_deleted(client: TestClient, store: Store) -> None:
    ip = add_ip_address(store, "ip-1")
    rule = add_routing_rule(store, "rule-1", ip)
    ok(client.put(DEFAULT, json={"virtual_mta": {"name": "rule-1"}}))
    before = snapshot(store)
    messages = failed(client.delete(f"{GA}/routing_rules/{rule}"), 400, "validation_failed")
    assert messages == ["it is the default VirtualMTA; set another default first"]
    assert snapshot(store) == before


def test_methods_not_supported(client: TestClient) -> None:
    failed(client.delete(DEFAULT), 405, "invalid_request")
    failed(client.post(URL, json={}), 405, "invalid_request")
    failed(client.put(f"{URL}/1/used_by", json={}), 405, "invalid_request")


def test_openapi_documents_the_new_shapes(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    components = document["components"]["schemas"]
    for model in ("RoutingRule", "VirtualMtaSummary", "UsedBy"):
        assert model in components, model
    paths = document["paths"]
    body = paths[f"{GA}/routing_rules"]["post"]["requestBody"]["content"]["application/json"]
    rule = body["schema"]["properties"]["routing_rule"]
    assert rule["required"] == ["name", "default"]
    assert set(rule["properties"]) == {"id", "name", "default", "domain_overrides"}
    assert {"get", "put"} <= set(paths[f"{URL}/default"])
    assert "get" in paths[f"{URL}/{{record_id}}/used_by"]
    assert {"get", "post"} <= set(paths[f"{GA}/routing_rules"])
