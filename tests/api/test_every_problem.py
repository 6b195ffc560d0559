"""Every problem of a GreenArrow request is reported at once (contract §2.1): a document that
breaks field rules is still checked against the store for a taken name and for references
to nothing, on create and on update of each record type, and nothing changes."""

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
)
from vmta.store.store import Store

BAD_PORT = "destination.port must be an integer from 1 to 65535"
BAD_IP = "ip must be a valid IPv4 address in dotted-decimal notation"
NO_GHOST = "redirect does not refer to an existing VirtualMTA (name 'ghost')"
NO_ID = "redirect does not refer to an existing VirtualMTA (id 999999)"
NO_TEMPLATE = "throttling_template does not refer to an existing throttling template (name 'nope')"


def taken(name: str, kind: str, record_id: int) -> str:
    return (
        f"name '{name}' is already used by another VirtualMTA ({kind} {record_id});"
        " names are unique ignoring case"
    )


def refused(client: TestClient, store: Store, method: str, url: str, body: Any) -> list[str]:
    """The messages of a 400 validation_failed answer to a request that changed nothing."""
    before = snapshot(store)
    messages = failed(client.request(method, url, json=body), 400, "validation_failed")
    assert snapshot(store) == before
    return messages


# ---- relay servers -------------------------------------------------------------------------


def relay(name: str = "relay-1", port: Any = 25, **changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "name": name,
        "source_ip": {"ip": "127.0.0.2", "hostname": "out.example.com"},
        "destination": {"hostname": "smtp.example.com", "port": port},
        "throttle_limits": {"max_concurrent_connections": 2, "max_messages_per_hour": 120},
    }
    record.update(changes)
    return {"relay_server": record}


@pytest.fixture
def relay_url(request: pytest.FixtureRequest, store: Store) -> tuple[str, str]:
    """POST to the list, or PUT to an existing relay server: the same rules apply."""
    if request.param == "create":
        return "POST", f"{GA}/relay_servers"
    return "PUT", f"{GA}/relay_servers/{add_relay_server(store, 'relay-old')}"


@pytest.mark.parametrize("relay_url", ["create", "update"], indirect=True)
def test_relay_server_field_problem_and_unknown_redirect(
    client: TestClient, store: Store, relay_url: tuple[str, str]
) -> None:
    body = relay(port=0, redirect={"name": "ghost"})
    assert refused(client, store, *relay_url, body) == [BAD_PORT, NO_GHOST]


@pytest.mark.parametrize("relay_url", ["create", "update"], indirect=True)
def test_relay_server_field_problem_and_taken_name(
    client: TestClient, store: Store, relay_url: tuple[str, str]
) -> None:
    ip_id = add_ip_address(store, "Shared")
    body = relay("SHARED", port="25", redirect={"id": 999999})
    messages = refused(client, store, *relay_url, body)
    assert messages == [
        "destination.port must be an integer from 1 to 65535",
        taken("SHARED", "ip_address", ip_id),
        NO_ID,
    ]


def test_relay_server_update_keeps_its_own_name_and_good_redirect(
    client: TestClient, store: Store
) -> None:
    # The merged document holds the record's own name and stored redirect: neither is a
    # problem, so only the field problem is reported.
    target = add_ip_address(store, "target")
    relay_id = add_relay_server(store, "relay-1", redirect=target)
    body = {"relay_server": {"destination": {"port": 70000}}}
    url = f"{GA}/relay_servers/{relay_id}"
    assert refused(client, store, "PUT", url, body) == [BAD_PORT]


def test_relay_server_cycle_is_left_for_a_valid_record(client: TestClient, store: Store) -> None:
    # A loop can only be traced through a whole record; the bad port is what is reported.
    relay_id = add_relay_server(store, "relay-1")
    body = {"relay_server": {"destination": {"port": 0}, "redirect": {"id": relay_id}}}
    url = f"{GA}/relay_servers/{relay_id}"
    assert refused(client, store, "PUT", url, body) == [BAD_PORT]
    body = {"relay_server": {"redirect": {"id": relay_id}}}
    messages = refused(client, store, "PUT", url, body)
    assert messages == ["redirect would make mail loop (relay-1 -> relay-1)"]


def test_references_that_did_not_parse_are_not_looked_up(client: TestClient, store: Store) -> None:
    body = relay("relay 1,", port=0, redirect={"id": "7"})
    messages = refused(client, store, "POST", f"{GA}/relay_servers", body)
    assert messages == [
        "name must not contain a comma, pound sign or at-sign",
        BAD_PORT,
        "redirect.id must be an integer",
    ]


# ---- IP addresses --------------------------------------------------------------------------


def ip_address(name: str = "ip-1", ip: str = "127.0.0.2", **changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"name": name, "ip": ip, "hostname": "mta.example.com"}
    record.update(changes)
    return {"ip_address": record}


@pytest.fixture
def ip_url(request: pytest.FixtureRequest, store: Store) -> tuple[str, str]:
    if request.param == "create":
        return "POST", f"{GA}/ip_addresses"
    return "PUT", f"{GA}/ip_addresses/{add_ip_address(store, 'ip-old')}"


@pytest.mark.parametrize("ip_url", ["create", "update"], indirect=True)
def test_ip_address_field_problems_and_unknown_references(
    client: TestClient, store: Store, ip_url: tuple[str, str]
) -> None:
    body = ip_address(
        ip="300.0.0.1",
        delivery_paused="yes",
        redirect={"id": 999999},
        throttling_template={"name": "nope"},
    )
    assert refused(client, store, *ip_url, body) == [
        BAD_IP,
        "delivery_paused must be true or false, not a string",
        NO_ID,
        NO_TEMPLATE,
    ]


@pytest.mark.parametrize("ip_url", ["create", "update"], indirect=True)
def test_ip_address_field_problem_and_taken_name(
    client: TestClient, store: Store, ip_url: tuple[str, str]
) -> None:
    relay_id = add_relay_server(store, "Mail-Out")
    body = ip_address("mail-out", ip="127.0.0", default={"max_concurrent_connections": -1})
    assert refused(client, store, *ip_url, body) == [
        BAD_IP,
        "default.max_concurrent_connections must be an integer from 0 to 2147483647",
        "default.max_messages_per_hour is required",
        taken("mail-out", "relay_server", relay_id),
    ]


def test_ip_address_known_template_is_no_problem(client: TestClient, store: Store) -> None:
    template = {
        "name": "tpl-1",
        "default": {"max_concurrent_connections": 1, "max_messages_per_hour": 1},
    }
    ok(client.post(f"{GA}/throttling_templates", json={"throttling_template": template}))
    body = ip_address(ip="", throttling_template={"name": "TPL-1"}, redirect={"name": "ghost"})
    assert refused(client, store, "POST", f"{GA}/ip_addresses", body) == [BAD_IP, NO_GHOST]


# ---- routing rules -------------------------------------------------------------------------


@pytest.fixture
def rule_url(request: pytest.FixtureRequest, store: Store) -> tuple[str, str]:
    if request.param == "create":
        return "POST", f"{GA}/routing_rules"
    target = add_ip_address(store, "ip-target")
    return "PUT", f"{GA}/routing_rules/{add_routing_rule(store, 'rule-old', target)}"


@pytest.mark.parametrize("rule_url", ["create", "update"], indirect=True)
def test_routing_rule_field_problems_and_unknown_references(
    client: TestClient, store: Store, rule_url: tuple[str, str]
) -> None:
    known = add_ip_address(store, "ip-1")
    body = {
        "routing_rule": {
            "name": "rule-1",
            "default": distribution(entry({"name": "ghost"}), entry({"id": known}, 0)),
            "domain_overrides": [
                {
                    "domains": ["bad domain"],
                    **distribution(entry({"id": 999999}, "1"), kind="sometimes"),
                }
            ],
        }
    }
    messages = refused(client, store, *rule_url, body)
    assert messages[-2:] == [
        "default.deliver_through[0].virtual_mta does not refer to an existing VirtualMTA"
        " (name 'ghost')",
        "domain_overrides[0].deliver_through[0].virtual_mta does not refer to an existing"
        " VirtualMTA (id 999999)",
    ]
    field_problems = messages[:-2]
    assert [m.split(" ", 1)[0] for m in field_problems] == [
        "default.deliver_through[1].portion_of_mail",
        "domain_overrides[0].domains[0]",
        "domain_overrides[0].randomization_type",
        "domain_overrides[0].deliver_through[0].portion_of_mail",
    ]


@pytest.mark.parametrize("rule_url", ["create", "update"], indirect=True)
def test_routing_rule_field_problem_and_taken_name(
    client: TestClient, store: Store, rule_url: tuple[str, str]
) -> None:
    ip_id = add_ip_address(store, "ip-1")
    body = {
        "routing_rule": {
            "name": "IP-1",
            "default": distribution(entry({"id": ip_id}), kind="never"),
            "domain_overrides": [],
        }
    }
    assert refused(client, store, *rule_url, body) == [
        "default.randomization_type must be one of random, message_constant,"
        " email_address_constant",
        taken("IP-1", "ip_address", ip_id),
    ]


# ---- throttling templates ------------------------------------------------------------------


def template(name: str, **changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "name": name,
        "default": {"max_concurrent_connections": 1, "max_messages_per_hour": 10},
    }
    record.update(changes)
    return {"throttling_template": record}


@pytest.fixture
def template_url(request: pytest.FixtureRequest, client: TestClient) -> tuple[str, str]:
    if request.param == "create":
        return "POST", f"{GA}/throttling_templates"
    created = ok(client.post(f"{GA}/throttling_templates", json=template("tpl-old")))
    return "PUT", f"{GA}/throttling_templates/{created['throttling_template']['id']}"


@pytest.mark.parametrize("template_url", ["create", "update"], indirect=True)
def test_throttling_template_field_problems_and_taken_name(
    client: TestClient, store: Store, template_url: tuple[str, str]
) -> None:
    created = ok(client.post(f"{GA}/throttling_templates", json=template("Warmup")))
    other_id = created["throttling_template"]["id"]
    body = template(
        "WARMUP",
        default={"max_concurrent_connections": -1, "max_messages_per_hour": 10},
        rules=[{"domains": ["a..com"], "max_concurrent_connections": 1}],
        throttle_program="x",
    )
    messages = refused(client, store, *template_url, body)
    assert [m.split(" ", 1)[0] for m in messages[:-1]] == [
        "throttle_program",
        "rules[0].domains[0]",
        "rules[0].max_messages_per_hour",
        "default.max_concurrent_connections",
    ]
    assert messages[-1] == (
        f"name 'WARMUP' is already used by another throttling template (id {other_id});"
        " names are unique ignoring case"
    )


def test_throttling_template_names_are_not_virtual_mta_names(
    client: TestClient, store: Store
) -> None:
    # Templates have their own name space: an IP address of that name is no clash.
    add_ip_address(store, "shared")
    body = template("shared", default=None)
    messages = refused(client, store, "POST", f"{GA}/throttling_templates", body)
    assert messages == ["default must be a hash, not null"]
