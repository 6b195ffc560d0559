"""Throttling templates: every rule of contract §2.8."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import GA, failed, ok, snapshot, update_patch, validation_table
from vmta.store.store import Store

URL = f"{GA}/throttling_templates"
LIMITS = {"max_concurrent_connections": 4, "max_messages_per_hour": 1000}


def minimal(name: str = "tpl-1", **changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"name": name, "default": dict(LIMITS)}
    record.update(changes)
    return {"throttling_template": record}


def rule(*domains: str, conn: int = 1, msgs: int = 100) -> dict[str, Any]:
    return {
        "domains": list(domains),
        "max_concurrent_connections": conn,
        "max_messages_per_hour": msgs,
    }


def full(name: str = "tpl-1") -> dict[str, Any]:
    return minimal(
        name,
        rules=[
            rule("gmail.com", "[*.]googlemail.com", conn=2, msgs=500),
            rule("mx:[*.]outlook.com", "*.yahoo.com", conn=0, msgs=0),
        ],
    )


def create(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = ok(client.post(URL, json=body))["throttling_template"]
    return record


def create_ip(client: TestClient, name: str, template_id: int) -> dict[str, Any]:
    body = {
        "ip_address": {
            "name": name,
            "ip": "127.0.0.2",
            "hostname": "mta.example.com",
            "throttling_template": {"id": template_id},
        }
    }
    record: dict[str, Any] = ok(client.post(f"{GA}/ip_addresses", json=body))["ip_address"]
    return record


def rule_ids(record: dict[str, Any]) -> list[int]:
    return [r["id"] for r in record["rules"]]


def test_create_full_record_and_get_it(client: TestClient) -> None:
    body = full()
    record = create(client, body)
    ids = rule_ids(record)
    assert all(isinstance(i, int) for i in ids) and len(set(ids)) == 2
    expected = copy.deepcopy(body["throttling_template"])
    expected["id"] = record["id"]
    for item, rule_id in zip(expected["rules"], ids, strict=True):
        item["id"] = rule_id
        item["throttle_program"] = None
    assert record == expected
    assert list(record) == ["id", "name", "rules", "default"]
    assert list(record["rules"][0]) == [
        "id",
        "domains",
        "max_concurrent_connections",
        "max_messages_per_hour",
        "throttle_program",
    ]
    assert ok(client.get(f"{URL}/{record['id']}")) == {"throttling_template": record}


def test_create_minimal_has_no_rules(client: TestClient) -> None:
    record = create(client, minimal())
    assert record == {"id": record["id"], "name": "tpl-1", "rules": [], "default": LIMITS}


def test_throttle_program_null_is_accepted(client: TestClient) -> None:
    record = create(client, minimal(throttle_program=None))
    assert "throttle_program" not in record


def test_read_only_ids_are_ignored(client: TestClient) -> None:
    body = minimal(id=777, rules=[{**rule("a.example"), "id": 888}])
    record = create(client, body)
    assert record["id"] != 777
    assert rule_ids(record) != [888]


def test_templates_have_their_own_ids_and_names(client: TestClient) -> None:
    template = create(client, minimal("shared"))
    create_ip(client, "Shared", template["id"])  # not a clash: another name space
    # Creating VirtualMTAs does not consume template ids.
    assert create(client, minimal("tpl-2"))["id"] == template["id"] + 1
    # Template names may be integers, unlike VirtualMTA names.
    create(client, minimal("42"))


def test_list_shape_and_pages(client: TestClient) -> None:
    ids = [create(client, minimal(f"tpl-{i}"))["id"] for i in range(5)]
    assert ok(client.get(URL)) == {
        "throttling_templates": [{"id": i, "name": f"tpl-{n}"} for n, i in enumerate(ids)],
        "pagination": {
            "page": 0,
            "per_page": 100,
            "num_pages": 1,
            "num_records": 5,
            "next_page_token": None,
        },
    }
    seen: list[int] = []
    params = {"per_page": "2"}
    pages = 0
    while True:
        data = ok(client.get(URL, params=params))
        pages += 1
        assert data["pagination"]["num_pages"] == 3
        seen += [item["id"] for item in data["throttling_templates"]]
        token = data["pagination"]["next_page_token"]
        if token is None:
            break
        params["page_token"] = token
    assert seen == ids and pages == 3
    by_number = ok(client.get(URL, params={"per_page": "2", "page": "2"}))
    assert [item["id"] for item in by_number["throttling_templates"]] == ids[4:]
    assert ok(client.get(URL, params={"page": "9"}))["throttling_templates"] == []
    failed(client.get(URL, params={"page_token": "garbage"}), 400, "invalid_request")
    # A token of another list is refused rather than silently skipping templates.
    for i in range(2):
        create_ip(client, f"ipaddr-{i}", ids[0])
    foreign = ok(client.get(f"{GA}/ip_addresses", params={"per_page": "1"}))
    token = foreign["pagination"]["next_page_token"]
    assert token is not None
    failed(client.get(URL, params={"page_token": token}), 400, "invalid_request")


# Every rule: a request that breaks it gets validation_failed naming the field, and the
# store is unchanged.
BROKEN: list[tuple[str, dict[str, Any], str]] = [
    ("name missing", {"name": None}, "name"),
    ("name empty", {"name": ""}, "name"),
    ("name too long", {"name": "t" * 201}, "name"),
    ("name without letter or digit", {"name": "-- !"}, "name"),
    ("name not string", {"name": 5}, "name"),
    ("default missing", {"default": None}, "default"),
    ("default not hash", {"default": [1, 2]}, "default"),
    (
        "default max_concurrent_connections missing",
        {"default": {"max_messages_per_hour": 1}},
        "default.max_concurrent_connections",
    ),
    (
        "default max_messages_per_hour negative",
        {"default": {"max_concurrent_connections": 1, "max_messages_per_hour": -5}},
        "default.max_messages_per_hour",
    ),
    (
        "default max_concurrent_connections string",
        {"default": {"max_concurrent_connections": "4", "max_messages_per_hour": 1}},
        "default.max_concurrent_connections",
    ),
    (
        "default unknown field",
        {"default": {"max_concurrent_connections": 1, "max_messages_per_hour": 1, "burst": 2}},
        "default.burst",
    ),
    ("rules not array", {"rules": {"domains": ["a.com"]}}, "rules"),
    ("rules null", {"rules": None}, "rules"),
    ("rules too many", {"rules": [rule(f"d{i}.example") for i in range(251)]}, "rules"),
    ("rule not hash", {"rules": ["gmail.com"]}, "rules[0]"),
    (
        "rule domains missing",
        {"rules": [{"max_concurrent_connections": 1, "max_messages_per_hour": 1}]},
        "rules[0].domains",
    ),
    ("rule domains empty", {"rules": [rule()]}, "rules[0].domains"),
    ("rule domains not array", {"rules": [{**rule(), "domains": "a.com"}]}, "rules[0].domains"),
    (
        "rule domain not string",
        {"rules": [rule("a.com"), {**rule(), "domains": [7]}]},
        "rules[1].domains[0]",
    ),
    ("rule domain empty", {"rules": [rule("")]}, "rules[0].domains[0]"),
    ("rule domain bad label", {"rules": [rule("a.com", "-bad.com")]}, "rules[0].domains[1]"),
    ("rule domain double wildcard", {"rules": [rule("*.*.a.com")]}, "rules[0].domains[0]"),
    ("rule domain bare wildcard", {"rules": [rule("*.")]}, "rules[0].domains[0]"),
    ("rule domain empty mx", {"rules": [rule("mx:")]}, "rules[0].domains[0]"),
    ("rule domain bad mx", {"rules": [rule("mx:a..b")]}, "rules[0].domains[0]"),
    ("rule domain url", {"rules": [rule("http://a.com")]}, "rules[0].domains[0]"),
    ("rule domain surrounding space", {"rules": [rule(" a.com")]}, "rules[0].domains[0]"),
    ("rule domain space after mx", {"rules": [rule("mx: a.com")]}, "rules[0].domains[0]"),
    (
        "rule domain repeated in rule",
        {"rules": [rule("a.com", "A.COM")]},
        "rules[0].domains[1]",
    ),
    (
        "rule domain repeated across rules",
        {"rules": [rule("[*.]a.com"), rule("b.com", "[*.]A.com")]},
        "rules[1].domains[1]",
    ),
    (
        "rule mx domain repeated",
        {"rules": [rule("mx:*.mx.a.com"), rule("MX:*.MX.A.COM")]},
        "rules[1].domains[0]",
    ),
    (
        "rule max_concurrent_connections missing",
        {"rules": [{"domains": ["a.com"], "max_messages_per_hour": 1}]},
        "rules[0].max_concurrent_connections",
    ),
    (
        "rule max_messages_per_hour negative",
        {"rules": [rule("a.com", msgs=-1)]},
        "rules[0].max_messages_per_hour",
    ),
    (
        "rule max_messages_per_hour float",
        {"rules": [{**rule("a.com"), "max_messages_per_hour": 2.5}]},
        "rules[0].max_messages_per_hour",
    ),
    (
        "rule max_concurrent_connections boolean",
        {"rules": [{**rule("a.com"), "max_concurrent_connections": True}]},
        "rules[0].max_concurrent_connections",
    ),
    ("rule unknown field", {"rules": [{**rule("a.com"), "mx": True}]}, "rules[0].mx"),
    ("throttle_program string", {"throttle_program": "limit 5"}, "throttle_program"),
    ("throttle_program zero", {"throttle_program": 0}, "throttle_program"),
    ("throttle_program empty string", {"throttle_program": ""}, "throttle_program"),
    ("unknown field", {"domains": ["a.com"]}, "domains"),
]

BROKEN_BY_DATABASE = validation_table(BROKEN, store_rows=[])


@pytest.mark.parametrize(("label", "change", "field"), BROKEN_BY_DATABASE)
def test_each_rule_refuses_create(
    client: TestClient, store: Store, label: str, change: dict[str, Any], field: str
) -> None:
    body = minimal("tpl-x")
    for key, value in change.items():
        if value is None and label.endswith("missing"):
            body["throttling_template"].pop(key)
        else:
            body["throttling_template"][key] = value
    before = snapshot(store)
    messages = failed(client.post(URL, json=body), 400, "validation_failed")
    assert any(m.startswith(field + " ") for m in messages), messages
    assert snapshot(store) == before


@pytest.mark.parametrize(("label", "change", "field"), BROKEN_BY_DATABASE)
def test_each_rule_refuses_update(
    client: TestClient, store: Store, label: str, change: dict[str, Any], field: str
) -> None:
    created = create(client, full("tpl-x"))
    # A rule's inner field cannot be nulled through a path: rules is an array.
    patch = dict(change) if field.startswith("rules") else update_patch(label, change, field)
    before = snapshot(store)
    response = client.put(f"{URL}/{created['id']}", json={"throttling_template": patch})
    messages = failed(response, 400, "validation_failed")
    assert any(m.startswith(field + " ") for m in messages), messages
    assert snapshot(store) == before


def test_all_problems_are_reported_together(client: TestClient) -> None:
    body = minimal(
        "!!",
        default={"max_concurrent_connections": -1, "max_messages_per_hour": 1},
        rules=[rule("a.com"), rule("a.com", "-x", msgs=-1), 5],
        throttle_program="x",
    )
    messages = failed(client.post(URL, json=body), 400, "validation_failed")
    assert {m.split(" ")[0] for m in messages} == {
        "name",
        "default.max_concurrent_connections",
        "rules[1].domains[0]",
        "rules[1].domains[1]",
        "rules[1].max_messages_per_hour",
        "rules[2]",
        "throttle_program",
    }


def test_domain_patterns_accepted(client: TestClient) -> None:
    domains = [
        "example.com",
        "[*.]example.org",
        "*.example.net",
        "mx:gmail-smtp-in.l.google.com",
        "MX:[*.]protection.outlook.com",
        "mx:*.yahoodns.net",
        "mx:example.com",  # an MX host name pattern is not the same as the domain
        "xn--bcher-kva.example",
    ]
    record = create(client, minimal(rules=[rule(*domains)]))
    assert record["rules"][0]["domains"] == domains


def test_exactly_250_rules_are_accepted(client: TestClient) -> None:
    record = create(client, minimal(rules=[rule(f"d{i}.example") for i in range(250)]))
    assert len(set(rule_ids(record))) == 250


def test_names_are_unique_ignoring_case(client: TestClient, store: Store) -> None:
    create(client, minimal("Warmup"))
    other = create(client, minimal("steady"))
    before = snapshot(store)
    messages = failed(client.post(URL, json=minimal("WARMUP")), 400, "validation_failed")
    assert messages[0].startswith("name 'WARMUP' is already used by another throttling template")
    failed(
        client.put(f"{URL}/{other['id']}", json={"throttling_template": {"name": "warmup"}}),
        400,
        "validation_failed",
    )
    assert snapshot(store) == before
    # Renaming a template to a new case of its own name is fine.
    data = ok(client.put(f"{URL}/{other['id']}", json={"throttling_template": {"name": "STEADY"}}))
    assert data["throttling_template"]["name"] == "STEADY"


def test_put_changes_only_given_fields_and_keeps_rule_ids(client: TestClient) -> None:
    created = create(client, full())
    url = f"{URL}/{created['id']}"
    data = ok(client.put(url, json={"throttling_template": {"name": "renamed"}}))
    assert data["throttling_template"] == {**created, "name": "renamed"}
    # A nested hash merges key by key.
    data = ok(
        client.put(url, json={"throttling_template": {"default": {"max_messages_per_hour": 9}}})
    )
    assert data["throttling_template"]["default"] == {
        "max_concurrent_connections": 4,
        "max_messages_per_hour": 9,
    }
    assert data["throttling_template"]["rules"] == created["rules"]
    assert ok(client.get(url)) == data


def test_put_rules_keeps_the_ids_it_carries(client: TestClient) -> None:
    created = create(client, full())
    url = f"{URL}/{created['id']}"
    old_ids = rule_ids(created)
    # A rule given with its id is that rule, updated in place; one without is new; the
    # rule left out is removed.
    given = [{**rule("gmail.com", conn=9), "id": old_ids[1]}, rule("mx:*.mx.example")]
    data = ok(client.put(url, json={"throttling_template": {"rules": given}}))[
        "throttling_template"
    ]
    new_ids = rule_ids(data)
    assert new_ids[0] == old_ids[1]
    assert new_ids[1] not in old_ids and len(set(new_ids)) == 2
    assert [r["domains"] for r in data["rules"]] == [["gmail.com"], ["mx:*.mx.example"]]
    assert data["rules"][0]["max_concurrent_connections"] == 9
    assert data["default"] == LIMITS
    data = ok(client.put(url, json={"throttling_template": {"rules": []}}))
    assert data["throttling_template"]["rules"] == []


def test_put_sending_back_what_it_read_keeps_every_id(client: TestClient) -> None:
    created = create(client, full())
    url = f"{URL}/{created['id']}"
    sent = {"rules": created["rules"][::-1]}
    data = ok(client.put(url, json={"throttling_template": sent}))["throttling_template"]
    assert rule_ids(data) == rule_ids(created)[::-1]
    assert ok(client.get(url))["throttling_template"] == data


def test_put_with_a_rule_id_of_nothing_is_refused(client: TestClient, store: Store) -> None:
    created = create(client, full())
    other = create(client, full("other"))
    url = f"{URL}/{created['id']}"
    before = snapshot(store)
    foreign = rule_ids(other)[0]
    mine = rule_ids(created)[0]
    given = [
        {**rule("gmail.com"), "id": foreign},
        {**rule("a.example"), "id": mine},
        {**rule("b.example"), "id": mine},
        {**rule("c.example"), "id": "7"},
    ]
    messages = failed(
        client.put(url, json={"throttling_template": {"rules": given}}), 400, "validation_failed"
    )
    assert messages == [
        f"rules[0].id {foreign} is not the id of a row of this record;"
        " leave the id out to add a new row",
        f"rules[2].id {mine} is already given to rules[1]",
        "rules[3].id must be an integer or null",
    ]
    assert snapshot(store) == before


def test_delete(client: TestClient) -> None:
    created = create(client, full())
    assert ok(client.delete(f"{URL}/{created['id']}")) == {}
    failed(client.get(f"{URL}/{created['id']}"), 404, "not_found")
    again = create(client, full())
    assert again["id"] > created["id"]


def test_delete_refused_while_used_by_ip_addresses(client: TestClient, store: Store) -> None:
    template = create(client, full())
    first = create_ip(client, "ipaddr-1", template["id"])
    second = create_ip(client, "ipaddr-2", template["id"])
    before = snapshot(store)
    messages = failed(client.delete(f"{URL}/{template['id']}"), 400, "validation_failed")
    assert len(messages) == 2
    assert "ip_address 'ipaddr-1'" in messages[0]
    assert "ip_address 'ipaddr-2'" in messages[1]
    assert snapshot(store) == before
    ok(client.delete(f"{GA}/ip_addresses/{first['id']}"))
    ok(
        client.put(
            f"{GA}/ip_addresses/{second['id']}", json={"ip_address": {"throttling_template": None}}
        )
    )
    ok(client.delete(f"{URL}/{template['id']}"))


def test_not_found(client: TestClient) -> None:
    for url in (f"{URL}/999", f"{URL}/x", f"{URL}/-1"):
        failed(client.get(url), 404, "not_found")
        failed(client.put(url, json=minimal()), 404, "not_found")
        failed(client.delete(url), 404, "not_found")


@pytest.mark.one_database  # request validation only: the database adds nothing
@pytest.mark.parametrize(
    "raw", [b"not json", b"{}", b'{"throttling_templates": {}}', b'{"throttling_template": 1}']
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


def test_method_not_supported(client: TestClient) -> None:
    failed(client.patch(URL), 405, "invalid_request")
    failed(client.post(f"{URL}/1", json=minimal()), 405, "invalid_request")


def test_needs_credentials(anonymous: TestClient) -> None:
    failed(anonymous.get(URL), 401, "unauthorized")
    failed(anonymous.delete(f"{URL}/1"), 401, "unauthorized")


def test_openapi_documents_the_record(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    assert set(schemas["ThrottlingTemplate"]["properties"]) == {"id", "name", "rules", "default"}
    assert set(schemas["ThrottleRule"]["properties"]) == {
        "id",
        "domains",
        "max_concurrent_connections",
        "max_messages_per_hour",
        "throttle_program",
    }
    body = document["paths"][URL]["post"]["requestBody"]["content"]["application/json"]
    template = body["schema"]["properties"]["throttling_template"]
    assert template["additionalProperties"] is False
    assert set(template["properties"]) == {"id", "name", "rules", "default", "throttle_program"}
    assert {"get", "put", "delete"} <= set(document["paths"][URL + "/{record_id}"])
