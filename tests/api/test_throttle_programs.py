"""Throttle programs (Dynamic Delivery, contract §2.10) and the rules that name them
(§2.6, §2.8): the vendor's examples as written, validation, used_by, delete protection."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import GA, failed, ok, snapshot
from vmta.store.store import Store

URL = f"{GA}/throttle_programs"
LIMITS = {"max_concurrent_connections": 4, "max_messages_per_hour": 1000}
BUILTIN_ID = 1

# Shaped as the record on GreenArrow's Throttle Programs page.
PROGRAM = {
    "name": "Slow Down",
    "backoff": {
        "max_concurrent_connections": {"mode": "fixed", "value": 3},
        "max_messages_per_hour": {"mode": "percent", "value": 50},
    },
    "return_after": 900,
    "notify": "postmaster@example.com",
    "triggers": {"failure_rate": None, "deferral_rate": 20},
}


def create(client: TestClient, **changes: Any) -> dict[str, Any]:
    body = {**copy.deepcopy(PROGRAM), **changes}
    record: dict[str, Any] = ok(client.post(URL, json={"throttle_program": body}))[
        "throttle_program"
    ]
    return record


def test_create_and_get_the_documented_shape(client: TestClient) -> None:
    record = create(client)
    assert record == {"id": record["id"], "builtin": False, **PROGRAM}
    assert list(record) == [
        "id",
        "name",
        "builtin",
        "backoff",
        "return_after",
        "notify",
        "triggers",
    ]
    assert ok(client.get(f"{URL}/{record['id']}")) == {"throttle_program": record}


def test_the_builtin_program_is_listed_and_cannot_change(client: TestClient, store: Store) -> None:
    mine = create(client)
    data = ok(client.get(URL))
    assert data["throttle_programs"] == [
        {"id": BUILTIN_ID, "name": "Automatic Backoff"},
        {"id": mine["id"], "name": "Slow Down"},
    ]
    assert data["pagination"]["num_records"] == 2
    builtin = ok(client.get(f"{URL}/{BUILTIN_ID}"))["throttle_program"]
    assert builtin["builtin"] is True
    before = snapshot(store)
    put = client.put(f"{URL}/{BUILTIN_ID}", json={"throttle_program": {"return_after": 5}})
    assert failed(put, 400, "validation_failed") == [
        "it is built in; a built-in throttle program cannot be changed"
    ]
    assert failed(client.delete(f"{URL}/{BUILTIN_ID}"), 400, "validation_failed") == [
        "it is built in; a built-in throttle program cannot be deleted"
    ]
    assert snapshot(store) == before


def test_every_problem_is_reported_and_nothing_changes(client: TestClient, store: Store) -> None:
    create(client)
    before = snapshot(store)
    body = {
        "name": "SLOW DOWN",
        "backoff": {
            "max_concurrent_connections": {"mode": "half", "value": 0},
            "max_messages_per_hour": {"mode": "fixed", "value": "5"},
        },
        "return_after": 0,
        "notify": "not an address",
        "triggers": {"failure_rate": None, "deferral_rate": None},
        "colour": "red",
    }
    messages = failed(client.post(URL, json={"throttle_program": body}), 400, "validation_failed")
    assert messages == [
        "colour is not a known field",
        "backoff.max_concurrent_connections.mode must be one of percent, fixed",
        "backoff.max_concurrent_connections.value must be an integer from 1 to 2147483647",
        "backoff.max_messages_per_hour.value must be an integer from 1 to 2147483647",
        "return_after must be an integer from 1 to 2147483647",
        "notify must be null or an email address",
        "triggers must set failure_rate or deferral_rate (or both)",
        "name 'SLOW DOWN' is already used by another throttle program (id 2);"
        " names are unique ignoring case",
    ]
    assert snapshot(store) == before


@pytest.mark.parametrize(
    ("triggers", "message"),
    [
        ({"failure_rate": 0}, "triggers.failure_rate must be an integer from 1 to 100"),
        ({"deferral_rate": 101}, "triggers.deferral_rate must be an integer from 1 to 100"),
        ({"deferral_rate": True}, "triggers.deferral_rate must be an integer from 1 to 100"),
    ],
)
def test_trigger_rates_are_percentages(
    client: TestClient, triggers: dict[str, Any], message: str
) -> None:
    body = {**PROGRAM, "triggers": triggers}
    assert failed(client.post(URL, json={"throttle_program": body}), 400, "validation_failed") == [
        message
    ]


def test_put_changes_only_the_given_fields(client: TestClient) -> None:
    record = create(client)
    patch = {"backoff": {"max_messages_per_hour": {"mode": "fixed", "value": 10}}, "notify": None}
    updated = ok(client.put(f"{URL}/{record['id']}", json={"throttle_program": patch}))
    expected = copy.deepcopy(record)
    expected["backoff"]["max_messages_per_hour"] = {"mode": "fixed", "value": 10}
    expected["notify"] = None
    assert updated == {"throttle_program": expected}


def test_greenarrow_curl_example_for_a_template_is_accepted_as_written(
    client: TestClient,
) -> None:
    """GreenArrow's API introduction creates a template whose rule names a program by
    id and by a name that does not exist: the id wins."""
    body = {
        "throttling_template": {
            "name": "Example Throttling template",
            "rules": [
                {
                    "domains": ["example-2.com", "example-1.com"],
                    "throttle_program": {"id": 1, "name": "this name doesn't exist"},
                    "max_concurrent_connections": 2,
                    "max_messages_per_hour": 0,
                },
                {
                    "domains": ["example-3.com"],
                    "throttle_program": None,
                    "max_concurrent_connections": 0,
                    "max_messages_per_hour": 100,
                },
            ],
            "default": {"max_concurrent_connections": 1, "max_messages_per_hour": 0},
        }
    }
    record = ok(client.post(f"{GA}/throttling_templates", json=body))["throttling_template"]
    assert [r["throttle_program"] for r in record["rules"]] == [
        {"id": 1, "name": "Automatic Backoff"},
        None,
    ]


def test_unknown_program_references_are_refused(client: TestClient, store: Store) -> None:
    before = snapshot(store)
    rules = [
        {"domains": ["a.test"], **LIMITS, "throttle_program": {"id": 999}},
        {"domains": ["b.test"], **LIMITS, "throttle_program": {"name": "nope"}},
    ]
    template = {"name": "tpl", "default": LIMITS, "rules": rules}
    messages = failed(
        client.post(f"{GA}/throttling_templates", json={"throttling_template": template}),
        400,
        "validation_failed",
    )
    assert messages == [
        "rules[0].throttle_program does not refer to an existing throttle program (id 999)",
        "rules[1].throttle_program does not refer to an existing throttle program (name 'nope')",
    ]
    ip = {"name": "ip-1", "ip": "127.0.0.2", "hostname": "mta.example.com", "rules": rules}
    messages = failed(
        client.post(f"{GA}/ip_addresses", json={"ip_address": ip}), 400, "validation_failed"
    )
    assert messages == [
        "rules[0].throttle_program does not refer to an existing throttle program (id 999)",
        "rules[1].throttle_program does not refer to an existing throttle program (name 'nope')",
    ]
    assert snapshot(store) == before


def test_used_by_and_delete_protection(client: TestClient) -> None:
    program = create(client)
    ref = {"name": "slow down"}  # names ignore case
    rule = {"domains": ["a.test"], **LIMITS, "throttle_program": ref}
    template = ok(
        client.post(
            f"{GA}/throttling_templates",
            json={"throttling_template": {"name": "tpl", "default": LIMITS, "rules": [rule]}},
        )
    )["throttling_template"]
    ip = ok(
        client.post(
            f"{GA}/ip_addresses",
            json={
                "ip_address": {
                    "name": "ip-1",
                    "ip": "127.0.0.2",
                    "hostname": "mta.example.com",
                    "rules": [rule],
                }
            },
        )
    )["ip_address"]
    assert ip["rules"][0]["throttle_program"] == {"id": program["id"], "name": "Slow Down"}
    data = ok(client.get(f"{URL}/{program['id']}/used_by"))
    assert data["used_by"] == [
        {"type": "ip_address", "id": ip["id"], "name": "ip-1"},
        {"type": "throttling_template", "id": template["id"], "name": "tpl"},
    ]
    assert data["pagination"]["num_records"] == 2
    paged = ok(client.get(f"{URL}/{program['id']}/used_by", params={"per_page": 1}))
    second = ok(
        client.get(
            f"{URL}/{program['id']}/used_by",
            params={"page_token": paged["pagination"]["next_page_token"]},
        )
    )
    assert paged["used_by"] + second["used_by"] == data["used_by"]
    failed(
        client.get(f"{URL}/{program['id']}/used_by", params={"page_token": "bad"}),
        400,
        "invalid_request",
    )

    assert failed(client.delete(f"{URL}/{program['id']}"), 400, "validation_failed") == [
        f"it is used by ip_address 'ip-1' (id {ip['id']})",
        f"it is used by throttling_template 'tpl' (id {template['id']})",
    ]
    ok(client.put(f"{GA}/ip_addresses/{ip['id']}", json={"ip_address": {"rules": []}}))
    ok(client.delete(f"{GA}/throttling_templates/{template['id']}"))
    assert ok(client.get(f"{URL}/{program['id']}/used_by"))["used_by"] == []
    assert ok(client.delete(f"{URL}/{program['id']}")) == {}
    failed(client.get(f"{URL}/{program['id']}"), 404, "not_found")


def test_ip_address_rules_keep_their_ids_across_put(client: TestClient) -> None:
    rules = [
        {"domains": ["a.test"], **LIMITS, "throttle_program": None},
        {"domains": ["[*.]b.test"], **LIMITS, "throttle_program": {"id": BUILTIN_ID}},
    ]
    ip = ok(
        client.post(
            f"{GA}/ip_addresses",
            json={
                "ip_address": {
                    "name": "ip-1",
                    "ip": "127.0.0.2",
                    "hostname": "mta.example.com",
                    "rules": rules,
                }
            },
        )
    )["ip_address"]
    ids = [r["id"] for r in ip["rules"]]
    url = f"{GA}/ip_addresses/{ip['id']}"
    renamed = ok(client.put(url, json={"ip_address": {"name": "ip-2"}}))["ip_address"]
    assert renamed["rules"] == ip["rules"]
    sent = [{**ip["rules"][1], "max_messages_per_hour": 7}, rules[0]]
    updated = ok(client.put(url, json={"ip_address": {"rules": sent}}))["ip_address"]
    assert updated["rules"][0]["id"] == ids[1]
    assert updated["rules"][0]["max_messages_per_hour"] == 7
    assert updated["rules"][1]["id"] not in ids
    bad = [{**rules[0], "id": 123456}]
    assert failed(
        client.put(url, json={"ip_address": {"rules": bad}}), 400, "validation_failed"
    ) == [
        "rules[0].id 123456 is not the id of a row of this record;"
        " leave the id out to add a new row"
    ]


@pytest.mark.parametrize(
    ("plural", "singular", "extra"),
    [
        ("throttling_templates", "throttling_template", {"name": "tpl", "default": LIMITS}),
        (
            "ip_addresses",
            "ip_address",
            {"name": "ip-1", "ip": "127.0.0.2", "hostname": "mta.example.com"},
        ),
    ],
)
def test_one_rule_is_read_and_updated_on_its_own(
    client: TestClient, store: Store, plural: str, singular: str, extra: dict[str, Any]
) -> None:
    rules = [
        {"domains": ["a.test"], **LIMITS, "throttle_program": None},
        {"domains": ["b.test"], **LIMITS, "throttle_program": None},
    ]
    record = ok(client.post(f"{GA}/{plural}", json={singular: {**extra, "rules": rules}}))[singular]
    first, second = record["rules"]
    url = f"{GA}/{plural}/{record['id']}/rules/{second['id']}"
    assert ok(client.get(url)) == {"throttling_rule": second}

    patch = {"max_messages_per_hour": 5, "throttle_program": {"name": "automatic backoff"}}
    changed = ok(client.put(url, json={"throttling_rule": patch}))["throttling_rule"]
    assert changed == {
        **second,
        "max_messages_per_hour": 5,
        "throttle_program": {"id": BUILTIN_ID, "name": "Automatic Backoff"},
    }
    after = ok(client.get(f"{GA}/{plural}/{record['id']}"))[singular]
    assert after["rules"] == [first, changed]

    before = snapshot(store)
    broken = {"domains": ["A.test"], "max_concurrent_connections": -1}
    assert failed(client.put(url, json={"throttling_rule": broken}), 400, "validation_failed") == [
        "rules[1].domains[0] repeats rules[0].domains[0] ('A.test'); each domain may appear once",
        "rules[1].max_concurrent_connections must be an integer from 0 to 2147483647",
    ]
    assert snapshot(store) == before
    missing = f"{GA}/{plural}/{record['id']}/rules/999999"
    failed(client.get(missing), 404, "not_found")
    failed(client.put(missing, json={"throttling_rule": patch}), 404, "not_found")
