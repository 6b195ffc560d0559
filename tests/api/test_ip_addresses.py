"""IP addresses: every rule of contract §2.6 and the VirtualMTA rules of §2.4 they share."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import GA, failed, ok, snapshot, update_patch, validation_table
from vmta.domain.config.virtual_mta import Ref
from vmta.store.store import Store
from vmta.store.virtual_mtas import VirtualMtaRepository

URL = f"{GA}/ip_addresses"


def minimal(name: str = "ipaddr-1", **changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"name": name, "ip": "127.0.0.2", "hostname": "mta1.example.com"}
    record.update(changes)
    return {"ip_address": record}


def create(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = ok(client.post(URL, json=body))["ip_address"]
    return record


def create_template(client: TestClient, name: str = "tpl-1") -> dict[str, Any]:
    body = {
        "throttling_template": {
            "name": name,
            "default": {"max_concurrent_connections": 4, "max_messages_per_hour": 1000},
        }
    }
    record: dict[str, Any] = ok(client.post(f"{GA}/throttling_templates", json=body))[
        "throttling_template"
    ]
    return record


def create_relay(client: TestClient, name: str = "relay-1", **changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "name": name,
        "source_ip": {"ip": "127.0.0.9", "hostname": "out.example.com"},
        "destination": {"hostname": "smtp.example.com", "port": 25},
        "throttle_limits": {"max_concurrent_connections": 2, "max_messages_per_hour": 120},
    }
    record.update(changes)
    created: dict[str, Any] = ok(client.post(f"{GA}/relay_servers", json={"relay_server": record}))[
        "relay_server"
    ]
    return created


def test_create_minimal_gives_defaults(client: TestClient) -> None:
    record = create(client, minimal())
    assert isinstance(record["id"], int)
    assert record == {
        "id": record["id"],
        "name": "ipaddr-1",
        "ip": "127.0.0.2",
        "hostname": "mta1.example.com",
        "delivery_paused": False,
        "redirect": None,
        "throttling_template": None,
        "default": None,
        "rules": [],
    }
    assert list(record) == [
        "id",
        "name",
        "ip",
        "hostname",
        "delivery_paused",
        "redirect",
        "throttling_template",
        "default",
        "rules",
    ]


def test_create_full_record_and_get_it(client: TestClient) -> None:
    template = create_template(client, "Warmup")
    relay = create_relay(client)
    body = minimal(
        "ipaddr-full",
        ip="203.0.113.7",  # need not be local (contract §2.6)
        hostname="Mail-7.Example.COM",
        delivery_paused=True,
        redirect={"name": "RELAY-1"},
        throttling_template={"name": "warmup"},
        default={"max_concurrent_connections": 3, "max_messages_per_hour": 0},
    )
    record = create(client, body)
    expected = copy.deepcopy(body["ip_address"])
    expected.update(
        id=record["id"],
        redirect={"type": "relay_server", "id": relay["id"], "name": "relay-1"},
        throttling_template={"id": template["id"], "name": "Warmup"},
        rules=[],
    )
    assert record == expected
    assert ok(client.get(f"{URL}/{record['id']}")) == {"ip_address": expected}


def test_list_shape(client: TestClient) -> None:
    ids = [create(client, minimal(f"ipaddr-{i}"))["id"] for i in (1, 2, 3)]
    create_relay(client)  # other VirtualMTA types are not listed here
    assert ok(client.get(URL)) == {
        "ip_addresses": [
            {"id": i, "name": f"ipaddr-{n}"} for n, i in zip((1, 2, 3), ids, strict=True)
        ],
        "pagination": {
            "page": 0,
            "per_page": 100,
            "num_pages": 1,
            "num_records": 3,
            "next_page_token": None,
        },
    }


def test_list_filters(client: TestClient) -> None:
    a = create(client, minimal("Alpha", ip="127.0.0.2", hostname="a.example.com"))
    b = create(client, minimal("Beta", ip="127.0.0.3", hostname="a.example.com"))
    c = create(client, minimal("Gamma", ip="127.0.0.3", hostname="c.example.com"))
    create_relay(client, "relay-x", source_ip={"ip": "127.0.0.3", "hostname": "a.example.com"})

    def names(**params: str) -> list[str]:
        data = ok(client.get(URL, params=params))
        assert data["pagination"]["num_records"] == len(data["ip_addresses"])
        return [item["name"] for item in data["ip_addresses"]]

    assert names(name="ALPHA") == ["Alpha"]  # names compare ignoring case
    assert names(name="alph") == []  # exact, not a prefix
    assert names(ip="127.0.0.3") == ["Beta", "Gamma"]
    assert names(ip="127.0.0") == []
    assert names(hostname="a.example.com") == ["Alpha", "Beta"]
    assert names(ip="127.0.0.3", hostname="a.example.com") == ["Beta"]
    assert names(name="gamma", ip="127.0.0.2") == []
    assert {a["id"], b["id"], c["id"]} == {i["id"] for i in ok(client.get(URL))["ip_addresses"]}


def test_filtered_pages_walk_with_tokens(client: TestClient) -> None:
    wanted = [create(client, minimal(f"ip-{i}", ip="127.0.0.5"))["id"] for i in range(5)]
    for i in range(3):
        create(client, minimal(f"other-{i}", ip="127.0.0.6"))
    seen: list[int] = []
    params: dict[str, str] = {"ip": "127.0.0.5", "per_page": "2"}
    while True:
        data = ok(client.get(URL, params=params))
        seen += [item["id"] for item in data["ip_addresses"]]
        token = data["pagination"]["next_page_token"]
        if token is None:
            break
        params["page_token"] = token
    assert seen == wanted
    # A token of the filtered list is refused by the unfiltered one.
    failed(client.get(URL, params={"page_token": params["page_token"]}), 400, "invalid_request")


# Every rule: a request that breaks it gets validation_failed naming the field, and the
# store is unchanged.
BROKEN: list[tuple[str, dict[str, Any], str]] = [
    ("name missing", {"name": None}, "name"),
    ("name empty", {"name": ""}, "name"),
    ("name too long", {"name": "x" * 201}, "name"),
    ("name non-ascii", {"name": "adresse-é"}, "name"),
    ("name comma", {"name": "a,b"}, "name"),
    ("name at-sign", {"name": "a@b"}, "name"),
    ("name pound", {"name": "a#b"}, "name"),
    ("name trailing space", {"name": "a "}, "name"),
    ("name integer", {"name": "17"}, "name"),
    ("name not string", {"name": ["a"]}, "name"),
    ("ip missing", {"ip": None}, "ip"),
    ("ip ipv6", {"ip": "::1"}, "ip"),
    ("ip short", {"ip": "127.0.1"}, "ip"),
    ("ip leading zero", {"ip": "127.0.0.01"}, "ip"),
    ("ip out of range", {"ip": "256.0.0.1"}, "ip"),
    ("ip not string", {"ip": 2130706433}, "ip"),
    ("hostname missing", {"hostname": None}, "hostname"),
    ("hostname empty", {"hostname": ""}, "hostname"),
    ("hostname too long", {"hostname": ("a" * 60 + ".") * 3 + "a" * 20}, "hostname"),
    ("hostname ipv4 literal", {"hostname": "127.0.0.2"}, "hostname"),
    ("hostname underscore", {"hostname": "mta_1.example.com"}, "hostname"),
    ("hostname label starts with hyphen", {"hostname": "-mta.example.com"}, "hostname"),
    ("hostname empty label", {"hostname": "mta..example.com"}, "hostname"),
    ("hostname trailing dot", {"hostname": "mta.example.com."}, "hostname"),
    ("hostname space", {"hostname": "mta example.com"}, "hostname"),
    ("delivery_paused string", {"delivery_paused": "true"}, "delivery_paused"),
    ("delivery_paused number", {"delivery_paused": 1}, "delivery_paused"),
    ("delivery_paused null", {"delivery_paused": None}, "delivery_paused"),
    ("redirect unknown id", {"redirect": {"id": 9999}}, "redirect"),
    ("redirect unknown name", {"redirect": {"name": "nobody"}}, "redirect"),
    ("redirect not hash", {"redirect": "relay-1"}, "redirect"),
    ("redirect empty", {"redirect": {}}, "redirect"),
    ("redirect id string", {"redirect": {"id": "1"}}, "redirect.id"),
    (
        "throttling_template unknown id",
        {"throttling_template": {"id": 9999}},
        "throttling_template",
    ),
    (
        "throttling_template unknown name",
        {"throttling_template": {"name": "nope"}},
        "throttling_template",
    ),
    ("throttling_template not hash", {"throttling_template": 1}, "throttling_template"),
    ("throttling_template empty", {"throttling_template": {}}, "throttling_template"),
    (
        "throttling_template type",
        {"throttling_template": {"name": "tpl-1", "type": "x"}},
        "throttling_template.type",
    ),
    ("default not hash", {"default": 5}, "default"),
    (
        "default max_concurrent_connections missing",
        {"default": {"max_messages_per_hour": 1}},
        "default.max_concurrent_connections",
    ),
    (
        "default max_messages_per_hour negative",
        {"default": {"max_concurrent_connections": 1, "max_messages_per_hour": -1}},
        "default.max_messages_per_hour",
    ),
    (
        "default max_concurrent_connections string",
        {"default": {"max_concurrent_connections": "1", "max_messages_per_hour": 1}},
        "default.max_concurrent_connections",
    ),
    (
        "default max_concurrent_connections float",
        {"default": {"max_concurrent_connections": 1.5, "max_messages_per_hour": 1}},
        "default.max_concurrent_connections",
    ),
    (
        "default max_messages_per_hour boolean",
        {"default": {"max_concurrent_connections": 1, "max_messages_per_hour": False}},
        "default.max_messages_per_hour",
    ),
    (
        "default unknown field",
        {"default": {"max_concurrent_connections": 1, "max_messages_per_hour": 1, "x": 1}},
        "default.x",
    ),
    ("unknown field", {"source_ip": "127.0.0.2"}, "source_ip"),
]


def _apply(record: dict[str, Any], change: dict[str, Any], label: str) -> None:
    for key, value in change.items():
        if value is None and label.endswith("missing"):
            record.pop(key)
        else:
            record[key] = value


BROKEN_BY_DATABASE = validation_table(
    BROKEN,
    store_rows=[
        "redirect unknown id",
        "redirect unknown name",
        "throttling_template unknown id",
        "throttling_template unknown name",
    ],
)


@pytest.mark.parametrize(("label", "change", "field"), BROKEN_BY_DATABASE)
def test_each_rule_refuses_create(
    client: TestClient, store: Store, label: str, change: dict[str, Any], field: str
) -> None:
    create_template(client, "tpl-1")
    body = minimal("ipaddr-x")
    _apply(body["ip_address"], change, label)
    before = snapshot(store)
    messages = failed(client.post(URL, json=body), 400, "validation_failed")
    assert any(m.startswith(field + " ") for m in messages), messages
    assert snapshot(store) == before


@pytest.mark.parametrize(("label", "change", "field"), BROKEN_BY_DATABASE)
def test_each_rule_refuses_update(
    client: TestClient, store: Store, label: str, change: dict[str, Any], field: str
) -> None:
    create_template(client, "tpl-1")
    created = create(
        client,
        minimal(
            "ipaddr-x",
            default={"max_concurrent_connections": 1, "max_messages_per_hour": 1},
            throttling_template={"name": "tpl-1"},
        ),
    )
    patch = update_patch(label, change, field)
    before = snapshot(store)
    response = client.put(f"{URL}/{created['id']}", json={"ip_address": patch})
    messages = failed(response, 400, "validation_failed")
    assert any(m.startswith(field + " ") for m in messages), messages
    assert snapshot(store) == before


def test_all_problems_are_reported_together(client: TestClient) -> None:
    body = {
        "ip_address": {
            "name": "a@b",
            "ip": "1.2.3",
            "hostname": "1.2.3.4",
            "delivery_paused": "no",
            "default": {"max_concurrent_connections": -1, "max_messages_per_hour": "1"},
            "throttling_template": {"id": 77},
            "bogus": 1,
        }
    }
    messages = failed(client.post(URL, json=body), 400, "validation_failed")
    assert {m.split(" ")[0] for m in messages} >= {
        "name",
        "ip",
        "hostname",
        "delivery_paused",
        "default.max_concurrent_connections",
        "default.max_messages_per_hour",
        "bogus",
    }


def test_names_are_unique_ignoring_case_across_types(client: TestClient, store: Store) -> None:
    create_relay(client, "Shared-Name")
    create(client, minimal("ipaddr-1"))
    before = snapshot(store)
    for body in (minimal("shared-NAME"), minimal("IPADDR-1", ip="127.0.0.4")):
        messages = failed(client.post(URL, json=body), 400, "validation_failed")
        assert messages[0].startswith("name ")
    assert snapshot(store) == before


def test_ids_are_one_sequence_across_types(client: TestClient) -> None:
    relay = create_relay(client)
    ip = create(client, minimal())
    assert ip["id"] > relay["id"]
    failed(client.get(f"{URL}/{relay['id']}"), 404, "not_found")
    failed(client.get(f"{GA}/relay_servers/{ip['id']}"), 404, "not_found")
    failed(client.delete(f"{URL}/{relay['id']}"), 404, "not_found")


def test_the_same_ip_may_serve_several_records(client: TestClient) -> None:
    create(client, minimal("ipaddr-1", ip="127.0.0.2"))
    create(client, minimal("ipaddr-2", ip="127.0.0.2", hostname="other.example.com"))


def test_read_only_fields_are_ignored(client: TestClient) -> None:
    relay = create_relay(client)
    record = create(client, minimal(id=4242, redirect={"type": "routing_rule", "id": relay["id"]}))
    assert record["id"] != 4242
    assert record["redirect"] == {"type": "relay_server", "id": relay["id"], "name": "relay-1"}


def test_reference_id_wins_over_name(client: TestClient) -> None:
    first = create_template(client, "tpl-1")
    create_template(client, "tpl-2")
    relay = create_relay(client)
    create_relay(client, "relay-2")
    record = create(
        client,
        minimal(
            throttling_template={"id": first["id"], "name": "tpl-2"},
            redirect={"id": relay["id"], "name": "relay-2"},
        ),
    )
    assert record["throttling_template"] == {"id": first["id"], "name": "tpl-1"}
    assert record["redirect"]["id"] == relay["id"]


def test_put_changes_only_given_fields(client: TestClient) -> None:
    created = create(
        client, minimal(default={"max_concurrent_connections": 5, "max_messages_per_hour": 50})
    )
    url = f"{URL}/{created['id']}"
    data = ok(client.put(url, json={"ip_address": {"delivery_paused": True}}))["ip_address"]
    assert data == {**created, "delivery_paused": True}
    # A nested hash merges key by key.
    data = ok(client.put(url, json={"ip_address": {"default": {"max_messages_per_hour": 7}}}))
    assert data["ip_address"]["default"] == {
        "max_concurrent_connections": 5,
        "max_messages_per_hour": 7,
    }
    data = ok(client.put(url, json={"ip_address": {"default": None, "hostname": "b.example.com"}}))
    assert data["ip_address"] == {
        **created,
        "delivery_paused": True,
        "default": None,
        "hostname": "b.example.com",
    }
    assert ok(client.get(url)) == data


def test_put_default_needs_both_limits_when_there_was_none(
    client: TestClient, store: Store
) -> None:
    created = create(client, minimal())
    before = snapshot(store)
    messages = failed(
        client.put(
            f"{URL}/{created['id']}",
            json={"ip_address": {"default": {"max_concurrent_connections": 1}}},
        ),
        400,
        "validation_failed",
    )
    assert messages == ["default.max_messages_per_hour is required"]
    assert snapshot(store) == before


def test_put_template_by_name_replaces_whole_reference_then_null_clears(
    client: TestClient,
) -> None:
    first = create_template(client, "tpl-1")
    second = create_template(client, "tpl-2")
    created = create(client, minimal(throttling_template={"id": first["id"]}))
    url = f"{URL}/{created['id']}"
    # Merged key by key, {"name": "tpl-2"} would keep id 1, which wins: replaced whole.
    data = ok(client.put(url, json={"ip_address": {"throttling_template": {"name": "TPL-2"}}}))
    assert data["ip_address"]["throttling_template"] == {"id": second["id"], "name": "tpl-2"}
    data = ok(client.put(url, json={"ip_address": {"throttling_template": None}}))
    assert data["ip_address"]["throttling_template"] is None
    assert ok(client.get(url))["ip_address"]["throttling_template"] is None


def test_template_rename_shows_in_ip_address(client: TestClient) -> None:
    template = create_template(client, "tpl-1")
    created = create(client, minimal(throttling_template={"id": template["id"]}))
    ok(
        client.put(
            f"{GA}/throttling_templates/{template['id']}",
            json={"throttling_template": {"name": "renamed"}},
        )
    )
    record = ok(client.get(f"{URL}/{created['id']}"))["ip_address"]
    assert record["throttling_template"] == {"id": template["id"], "name": "renamed"}


def test_redirect_to_relay_server_by_name_then_null_clears(client: TestClient) -> None:
    relay = create_relay(client)
    created = create(client, minimal())
    url = f"{URL}/{created['id']}"
    data = ok(client.put(url, json={"ip_address": {"redirect": {"name": "Relay-1"}}}))
    assert data["ip_address"]["redirect"] == {
        "type": "relay_server",
        "id": relay["id"],
        "name": "relay-1",
    }
    data = ok(client.put(url, json={"ip_address": {"redirect": None}}))
    assert data["ip_address"]["redirect"] is None


def test_redirect_between_ip_addresses_and_from_relay_server(client: TestClient) -> None:
    target = create(client, minimal("ipaddr-target"))
    source = create(client, minimal("ipaddr-source", redirect={"id": target["id"]}))
    assert source["redirect"] == {"type": "ip_address", "id": target["id"], "name": "ipaddr-target"}
    relay = create_relay(client, redirect={"name": "ipaddr-target"})
    assert relay["redirect"] == {"type": "ip_address", "id": target["id"], "name": "ipaddr-target"}


def test_redirect_to_itself_is_refused(client: TestClient, store: Store) -> None:
    created = create(client, minimal())
    before = snapshot(store)
    messages = failed(
        client.put(
            f"{URL}/{created['id']}", json={"ip_address": {"redirect": {"name": "IPADDR-1"}}}
        ),
        400,
        "validation_failed",
    )
    assert messages == ["redirect would make mail loop (ipaddr-1 -> ipaddr-1)"]
    assert snapshot(store) == before


def test_redirect_loop_across_types_is_refused(client: TestClient, store: Store) -> None:
    ip = create(client, minimal("ipaddr-a"))
    relay = create_relay(client, "relay-b", redirect={"id": ip["id"]})
    other = create(client, minimal("ipaddr-c", redirect={"id": relay["id"]}))
    before = snapshot(store)
    messages = failed(
        client.put(f"{URL}/{ip['id']}", json={"ip_address": {"redirect": {"id": other["id"]}}}),
        400,
        "validation_failed",
    )
    assert messages == [
        "redirect would make mail loop (ipaddr-a -> ipaddr-c -> relay-b -> ipaddr-a)"
    ]
    messages = failed(
        client.put(
            f"{GA}/relay_servers/{relay['id']}",
            json={"relay_server": {"redirect": {"id": other["id"]}}},
        ),
        400,
        "validation_failed",
    )
    assert messages[0].startswith("redirect would make mail loop (relay-b -> ipaddr-c -> relay-b)")
    assert snapshot(store) == before


def test_delete(client: TestClient) -> None:
    created = create(client, minimal())
    assert ok(client.delete(f"{URL}/{created['id']}")) == {}
    failed(client.get(f"{URL}/{created['id']}"), 404, "not_found")
    again = create(client, minimal())
    assert again["id"] > created["id"]  # ids are never reused


def test_delete_refused_while_redirected_to(client: TestClient, store: Store) -> None:
    target = create(client, minimal("ipaddr-target"))
    create_relay(client, "relay-b", redirect={"id": target["id"]})
    create(client, minimal("ipaddr-c", redirect={"name": "ipaddr-target"}))
    before = snapshot(store)
    messages = failed(client.delete(f"{URL}/{target['id']}"), 400, "validation_failed")
    assert len(messages) == 2
    assert "relay_server 'relay-b'" in messages[0]
    assert "ip_address 'ipaddr-c'" in messages[1]
    assert snapshot(store) == before


def test_delete_refused_while_default_virtual_mta(client: TestClient, store: Store) -> None:
    created = create(client, minimal())
    with store.write() as conn:
        VirtualMtaRepository(conn).set_default(Ref(id=created["id"]))
    before = snapshot(store)
    messages = failed(client.delete(f"{URL}/{created['id']}"), 400, "validation_failed")
    assert messages == ["it is the default VirtualMTA; set another default first"]
    assert snapshot(store) == before
    with store.write() as conn:
        VirtualMtaRepository(conn).set_default(None)
    ok(client.delete(f"{URL}/{created['id']}"))


def test_not_found(client: TestClient) -> None:
    for url in (f"{URL}/999", f"{URL}/x", f"{URL}/-1", f"{URL}/1.0"):
        failed(client.get(url), 404, "not_found")
        failed(client.put(url, json=minimal()), 404, "not_found")
        failed(client.delete(url), 404, "not_found")


@pytest.mark.one_database  # request validation only: the database adds nothing
@pytest.mark.parametrize(
    "raw", [b"not json", b"[]", b'{"ip_addresses": {}}', b'{"ip_address": []}', b""]
)
def test_malformed_bodies_are_invalid_request(client: TestClient, store: Store, raw: bytes) -> None:
    created = create(client, minimal())
    before = snapshot(store)
    headers = {"Content-Type": "application/json"}
    failed(client.post(URL, content=raw, headers=headers), 400, "invalid_request")
    failed(
        client.put(f"{URL}/{created['id']}", content=raw, headers=headers), 400, "invalid_request"
    )
    assert snapshot(store) == before


def test_needs_credentials(anonymous: TestClient) -> None:
    failed(anonymous.get(URL), 401, "unauthorized")
    failed(anonymous.post(URL, json=minimal()), 401, "unauthorized")


def test_openapi_documents_the_record(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    assert set(schemas["IpAddress"]["properties"]) == {
        "id",
        "name",
        "ip",
        "hostname",
        "delivery_paused",
        "redirect",
        "throttling_template",
        "default",
        "rules",
    }
    body = document["paths"][URL]["post"]["requestBody"]["content"]["application/json"]
    created = body["schema"]["properties"]["ip_address"]
    assert created["required"] == ["name", "ip", "hostname"]
    assert created["additionalProperties"] is False
    assert {"get", "post"} <= set(document["paths"][URL])
    assert {"get", "put", "delete"} <= set(document["paths"][URL + "/{record_id}"])
