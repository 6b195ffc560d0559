"""Routing rules: every rule of contract §2.7, through the HTTP API."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import GA, failed, ok, snapshot, validation_table
from tests.api.virtual_mta_factories import (
    add_ip_address,
    add_relay_server,
    add_routing_rule,
    distribution,
    entry,
    rule_body,
)
from vmta.store.store import Store

URL = f"{GA}/routing_rules"


@pytest.fixture
def targets(store: Store) -> dict[str, int]:
    """An IP address ``ip-1`` and a relay server ``relay-1`` to route through."""
    return {"ip-1": add_ip_address(store, "ip-1"), "relay-1": add_relay_server(store, "relay-1")}


def create(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = ok(client.post(URL, json=body))["routing_rule"]
    return record


def put(client: TestClient, rule_id: int, patch: dict[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = ok(client.put(f"{URL}/{rule_id}", json={"routing_rule": patch}))[
        "routing_rule"
    ]
    return record


def override(domains: Any, *entries: dict[str, Any], kind: str = "random") -> dict[str, Any]:
    return {"domains": domains, **distribution(*entries, kind=kind)}


IP1 = entry({"name": "ip-1"})


def test_create_returns_the_full_record(client: TestClient, targets: dict[str, int]) -> None:
    body = rule_body(
        "rule-1",
        default=distribution(IP1, entry({"id": targets["relay-1"]}, 3), kind="random"),
        domain_overrides=[
            override(
                ["example.com", "[*.]Example.org"],
                entry({"name": "RELAY-1"}, 2.5),
                kind="message_constant",
            ),
            override(["*.example.net"], IP1, kind="email_address_constant"),
        ],
    )
    record = create(client, body)
    rule_id = record.pop("id")
    assert isinstance(rule_id, int)
    first_id = record["domain_overrides"][0].pop("id")
    second_id = record["domain_overrides"][1].pop("id")
    assert isinstance(first_id, int) and isinstance(second_id, int) and first_id != second_id
    ip = {"id": targets["ip-1"], "name": "ip-1"}
    relay = {"id": targets["relay-1"], "name": "relay-1"}
    assert record == {
        "name": "rule-1",
        "default": {
            "randomization_type": "random",
            "deliver_through": [
                {"virtual_mta": ip, "portion_of_mail": 1.0},
                {"virtual_mta": relay, "portion_of_mail": 3.0},
            ],
        },
        "domain_overrides": [
            {
                "domains": ["example.com", "[*.]Example.org"],
                "randomization_type": "message_constant",
                "deliver_through": [{"virtual_mta": relay, "portion_of_mail": 2.5}],
            },
            {
                "domains": ["*.example.net"],
                "randomization_type": "email_address_constant",
                "deliver_through": [{"virtual_mta": ip, "portion_of_mail": 1.0}],
            },
        ],
    }
    # GET answers exactly what POST did.
    got = ok(client.get(f"{URL}/{rule_id}"))["routing_rule"]
    assert list(got) == ["id", "name", "default", "domain_overrides"]
    assert list(got["domain_overrides"][0]) == [
        "id",
        "domains",
        "randomization_type",
        "deliver_through",
    ]
    assert got["id"] == rule_id and got["domain_overrides"][0]["id"] == first_id


def test_portion_of_mail_is_written_as_a_float(client: TestClient, targets: dict[str, int]) -> None:
    record = create(client, rule_body(default=distribution(entry({"name": "ip-1"}, 30))))
    portion = record["default"]["deliver_through"][0]["portion_of_mail"]
    assert isinstance(portion, float) and portion == 30.0
    raw = client.get(f"{URL}/{record['id']}").text
    assert '"portion_of_mail":30.0' in raw


def test_domain_overrides_default_to_empty(client: TestClient, targets: dict[str, int]) -> None:
    assert create(client, rule_body())["domain_overrides"] == []


def test_list_items_carry_id_and_name(client: TestClient, targets: dict[str, int]) -> None:
    ids = [create(client, rule_body(f"rule-{n}"))["id"] for n in (1, 2)]
    assert ok(client.get(URL)) == {
        "routing_rules": [{"id": ids[0], "name": "rule-1"}, {"id": ids[1], "name": "rule-2"}],
        "pagination": {
            "page": 0,
            "per_page": 100,
            "num_pages": 1,
            "num_records": 2,
            "next_page_token": None,
        },
    }


def test_a_rule_may_list_every_type(client: TestClient, targets: dict[str, int]) -> None:
    inner = create(client, rule_body("inner"))
    outer = create(
        client,
        rule_body(
            "outer",
            default=distribution(IP1, entry({"name": "relay-1"}), entry({"id": inner["id"]})),
        ),
    )
    listed = [e["virtual_mta"] for e in outer["default"]["deliver_through"]]
    assert listed == [
        {"id": targets["ip-1"], "name": "ip-1"},
        {"id": targets["relay-1"], "name": "relay-1"},
        {"id": inner["id"], "name": "inner"},
    ]


def test_the_three_pattern_forms_of_one_domain_are_distinct(
    client: TestClient, targets: dict[str, int]
) -> None:
    domains = ["example.com", "[*.]example.com", "*.example.com"]
    record = create(client, rule_body(domain_overrides=[override(domains, IP1)]))
    assert record["domain_overrides"][0]["domains"] == domains


# ---- every rule broken once ---------------------------------------------------------------

DROP: Any = object()  # remove the key from the create body


@dataclass(frozen=True)
class Case:
    label: str
    change: dict[str, Any]  # top-level keys of the record; DROP removes one
    field: str  # the field path the error must name
    update: dict[str, Any] | None = None  # PUT patch, when `change` would merge into a valid one

    def patch(self) -> dict[str, Any]:
        if self.update is not None:
            return self.update
        return {k: None if v is DROP else v for k, v in self.change.items()}


def _dist(*entries: Any, kind: Any = "random") -> dict[str, Any]:
    return {"randomization_type": kind, "deliver_through": list(entries)}


D0 = "default.deliver_through[0]"
O0 = "domain_overrides[0]"
CASES = [
    Case("name missing", {"name": DROP}, "name"),
    Case("name empty", {"name": ""}, "name"),
    Case("name too long", {"name": "r" * 201}, "name"),
    Case("name comma", {"name": "a,b"}, "name"),
    Case("name integer", {"name": "42"}, "name"),
    Case("name not string", {"name": 42}, "name"),
    Case("name taken by another type", {"name": "IP-1"}, "name"),
    Case("default missing", {"default": DROP}, "default"),
    Case("default null", {"default": None}, "default"),
    Case("default not hash", {"default": [IP1]}, "default"),
    Case("default unknown field", {"default": {**_dist(IP1), "colour": 1}}, "default.colour"),
    Case(
        "randomization_type missing",
        {"default": {"deliver_through": [IP1]}},
        "default.randomization_type",
        update={"default": {"randomization_type": None}},
    ),
    Case(
        "randomization_type unknown",
        {"default": _dist(IP1, kind="round_robin")},
        "default.randomization_type",
    ),
    Case(
        "randomization_type not string",
        {"default": _dist(IP1, kind=1)},
        "default.randomization_type",
    ),
    Case(
        "deliver_through missing",
        {"default": {"randomization_type": "random"}},
        "default.deliver_through",
        update={"default": {"deliver_through": None}},
    ),
    Case("deliver_through empty", {"default": _dist()}, "default.deliver_through"),
    Case(
        "deliver_through not array",
        {"default": {"randomization_type": "random", "deliver_through": IP1}},
        "default.deliver_through",
    ),
    Case("entry not hash", {"default": _dist("ip-1")}, D0),
    Case("entry unknown field", {"default": _dist({**IP1, "weight": 1})}, f"{D0}.weight"),
    Case(
        "virtual_mta missing",
        {"default": _dist({"portion_of_mail": 1})},
        f"{D0}.virtual_mta",
    ),
    Case("virtual_mta null", {"default": _dist(entry(None))}, f"{D0}.virtual_mta"),
    Case("virtual_mta not hash", {"default": _dist(entry("ip-1"))}, f"{D0}.virtual_mta"),
    Case("virtual_mta empty", {"default": _dist(entry({}))}, f"{D0}.virtual_mta"),
    Case("virtual_mta id string", {"default": _dist(entry({"id": "5"}))}, f"{D0}.virtual_mta.id"),
    Case(
        "virtual_mta name not string",
        {"default": _dist(entry({"name": 5}))},
        f"{D0}.virtual_mta.name",
    ),
    Case(
        "virtual_mta unknown field",
        {"default": _dist(entry({"name": "ip-1", "colour": 1}))},
        f"{D0}.virtual_mta.colour",
    ),
    Case("virtual_mta unknown id", {"default": _dist(entry({"id": 99999}))}, f"{D0}.virtual_mta"),
    Case(
        "virtual_mta unknown name",
        {"default": _dist(entry({"name": "nobody"}))},
        f"{D0}.virtual_mta",
    ),
    Case(
        "portion_of_mail missing",
        {"default": _dist({"virtual_mta": {"name": "ip-1"}})},
        f"{D0}.portion_of_mail",
    ),
    Case("portion_of_mail zero", {"default": _dist(entry({"name": "ip-1"}, 0))}, ""),
    Case("portion_of_mail negative", {"default": _dist(entry({"name": "ip-1"}, -1))}, ""),
    Case("portion_of_mail string", {"default": _dist(entry({"name": "ip-1"}, "1"))}, ""),
    Case("portion_of_mail boolean", {"default": _dist(entry({"name": "ip-1"}, True))}, ""),
    Case("portion_of_mail null", {"default": _dist(entry({"name": "ip-1"}, None))}, ""),
    Case("portion_of_mail huge", {"default": _dist(entry({"name": "ip-1"}, 10**400))}, ""),
    Case(
        "second entry broken",
        {"default": _dist(IP1, entry({"name": "ip-1"}, 0))},
        "default.deliver_through[1].portion_of_mail",
    ),
    Case("domain_overrides null", {"domain_overrides": None}, "domain_overrides"),
    Case("domain_overrides not array", {"domain_overrides": {}}, "domain_overrides"),
    Case("override not hash", {"domain_overrides": ["example.com"]}, O0),
    Case(
        "override unknown field",
        {"domain_overrides": [{**override(["a.com"], IP1), "priority": 1}]},
        f"{O0}.priority",
    ),
    Case("domains missing", {"domain_overrides": [_dist(IP1)]}, f"{O0}.domains"),
    Case("domains empty", {"domain_overrides": [override([], IP1)]}, f"{O0}.domains"),
    Case("domains not array", {"domain_overrides": [override("a.com", IP1)]}, f"{O0}.domains"),
    Case("domain not string", {"domain_overrides": [override([5], IP1)]}, f"{O0}.domains[0]"),
    Case("domain empty", {"domain_overrides": [override([""], IP1)]}, f"{O0}.domains[0]"),
    Case(
        "domain with space",
        {"domain_overrides": [override(["exa mple.com"], IP1)]},
        f"{O0}.domains[0]",
    ),
    Case(
        "domain empty label",
        {"domain_overrides": [override(["example..com"], IP1)]},
        f"{O0}.domains[0]",
    ),
    Case(
        "domain double wildcard",
        {"domain_overrides": [override(["*.*.example.com"], IP1)]},
        f"{O0}.domains[0]",
    ),
    Case(
        "domain mx pattern",
        {"domain_overrides": [override(["mx:mx.example.com"], IP1)]},
        f"{O0}.domains[0]",
    ),
    Case(
        "domain leading whitespace",
        {"domain_overrides": [override([" example.com"], IP1)]},
        f"{O0}.domains[0]",
    ),
    Case(
        "domain repeated ignoring case",
        {"domain_overrides": [override(["example.com", "EXAMPLE.com"], IP1)]},
        f"{O0}.domains[1]",
    ),
    Case(
        "domain repeated in another override",
        {
            "domain_overrides": [
                override(["a.example"], IP1),
                override(["[*.]b.example", "A.Example"], IP1),
            ]
        },
        "domain_overrides[1].domains[1]",
    ),
    Case(
        "override randomization_type missing",
        {"domain_overrides": [{"domains": ["a.com"], "deliver_through": [IP1]}]},
        f"{O0}.randomization_type",
    ),
    Case(
        "override deliver_through empty",
        {"domain_overrides": [override(["a.com"])]},
        f"{O0}.deliver_through",
    ),
    Case(
        "override virtual_mta unknown",
        {"domain_overrides": [override(["a.com"], entry({"name": "nobody"}))]},
        f"{O0}.deliver_through[0].virtual_mta",
    ),
    Case("unknown field", {"colour": "blue"}, "colour"),
]


def _field(case: Case) -> str:
    return case.field or f"{D0}.portion_of_mail"


def _create_body(case: Case) -> dict[str, Any]:
    body = rule_body("rule-x")
    for key, value in case.change.items():
        if value is DROP:
            body["routing_rule"].pop(key, None)
        else:
            body["routing_rule"][key] = copy.deepcopy(value)
    return body


CASES_BY_DATABASE = validation_table(
    CASES,
    store_rows=[
        "name taken by another type",
        "virtual_mta unknown id",
        "virtual_mta unknown name",
        "override virtual_mta unknown",
    ],
    label=lambda case: case.label,
    unpack=False,
)


@pytest.mark.parametrize("case", CASES_BY_DATABASE)
def test_each_rule_refuses_create(
    client: TestClient, store: Store, targets: dict[str, int], case: Case
) -> None:
    before = snapshot(store)
    messages = failed(client.post(URL, json=_create_body(case)), 400, "validation_failed")
    assert any(m.startswith(_field(case) + " ") for m in messages), messages
    assert snapshot(store) == before


@pytest.mark.parametrize("case", CASES_BY_DATABASE)
def test_each_rule_refuses_update(
    client: TestClient, store: Store, targets: dict[str, int], case: Case
) -> None:
    created = create(
        client, rule_body("rule-x", domain_overrides=[override(["kept.example"], IP1)])
    )
    before = snapshot(store)
    response = client.put(f"{URL}/{created['id']}", json={"routing_rule": case.patch()})
    messages = failed(response, 400, "validation_failed")
    assert any(m.startswith(_field(case) + " ") for m in messages), messages
    assert snapshot(store) == before


def test_the_documented_sentence_for_a_bad_portion(
    client: TestClient, targets: dict[str, int]
) -> None:
    body = rule_body(domain_overrides=[override(["a.com"], IP1, entry({"name": "ip-1"}, 0))])
    messages = failed(client.post(URL, json=body), 400, "validation_failed")
    assert messages == [
        "domain_overrides[0].deliver_through[1].portion_of_mail must be a number greater than 0"
    ]


def test_a_portion_that_json_reads_as_infinity_is_refused(
    client: TestClient, store: Store, targets: dict[str, int]
) -> None:
    raw = (
        b'{"routing_rule": {"name": "r", "default": {"randomization_type": "random",'
        b' "deliver_through": [{"virtual_mta": {"name": "ip-1"}, "portion_of_mail": 1e400}]}}}'
    )
    before = snapshot(store)
    response = client.post(URL, content=raw, headers={"Content-Type": "application/json"})
    assert failed(response, 400, "validation_failed") == [
        f"{D0}.portion_of_mail must be a finite number greater than 0"
    ]
    assert snapshot(store) == before


def test_all_problems_are_reported_together(client: TestClient, targets: dict[str, int]) -> None:
    body = {
        "routing_rule": {
            "name": "a@b",
            "default": {"randomization_type": "sometimes", "deliver_through": []},
            "domain_overrides": [
                override(["ok.example", "bad domain"], entry({"name": "ip-1"}, "2")),
                override(["OK.example"], entry({"id": "x"}, 1), kind="random"),
                7,
            ],
            "bogus": 1,
        }
    }
    messages = failed(client.post(URL, json=body), 400, "validation_failed")
    fields = [m.split(" ")[0] for m in messages]
    assert set(fields) == {
        "bogus",
        "name",
        "default.randomization_type",
        "default.deliver_through",
        "domain_overrides[0].domains[1]",
        "domain_overrides[0].deliver_through[0].portion_of_mail",
        "domain_overrides[1].domains[0]",
        "domain_overrides[1].deliver_through[0].virtual_mta.id",
        "domain_overrides[2]",
    }


def test_every_unknown_reference_is_reported(
    client: TestClient, store: Store, targets: dict[str, int]
) -> None:
    body = rule_body(
        default=distribution(entry({"name": "ghost"}), IP1),
        domain_overrides=[override(["a.com"], IP1, entry({"id": 424242}))],
    )
    before = snapshot(store)
    messages = failed(client.post(URL, json=body), 400, "validation_failed")
    assert messages == [
        f"{D0}.virtual_mta does not refer to an existing VirtualMTA (name 'ghost')",
        "domain_overrides[0].deliver_through[1].virtual_mta does not refer to an existing"
        " VirtualMTA (id 424242)",
    ]
    assert snapshot(store) == before


# ---- read-only fields and partial updates -------------------------------------------------


def test_read_only_ids_are_ignored_on_create(client: TestClient, targets: dict[str, int]) -> None:
    body = rule_body(domain_overrides=[{"id": 777777, **override(["a.com"], IP1)}])
    body["routing_rule"]["id"] = 888888
    record = create(client, body)
    assert record["id"] != 888888
    assert record["domain_overrides"][0]["id"] != 777777
    # References may carry the `type` that GET of a VirtualMTA list shows.
    typed = rule_body(
        "rule-2", default=distribution(entry({"type": "relay_server", "id": targets["ip-1"]}))
    )
    listed = create(client, typed)["default"]["deliver_through"][0]["virtual_mta"]
    assert listed == {"id": targets["ip-1"], "name": "ip-1"}


def test_put_default_merges_key_by_key(client: TestClient, targets: dict[str, int]) -> None:
    created = create(
        client, rule_body(default=distribution(IP1, entry({"name": "relay-1"}, 2), kind="random"))
    )
    updated = put(client, created["id"], {"default": {"randomization_type": "message_constant"}})
    expected = copy.deepcopy(created)
    expected["default"]["randomization_type"] = "message_constant"
    assert updated == expected
    # deliver_through is an array: it is replaced whole, randomization_type is kept.
    updated = put(
        client, created["id"], {"default": {"deliver_through": [entry({"name": "relay-1"}, 5)]}}
    )
    assert updated["default"] == {
        "randomization_type": "message_constant",
        "deliver_through": [
            {"virtual_mta": {"id": targets["relay-1"], "name": "relay-1"}, "portion_of_mail": 5.0}
        ],
    }
    assert ok(client.get(f"{URL}/{created['id']}"))["routing_rule"] == updated


def test_put_domain_overrides_replaces_the_array(
    client: TestClient, targets: dict[str, int]
) -> None:
    created = create(
        client,
        rule_body(domain_overrides=[override(["a.com"], IP1), override(["b.com"], IP1)]),
    )
    old_ids = [o["id"] for o in created["domain_overrides"]]
    # An override sent back with its id is that override, updated in place: it keeps
    # its id. One without an id is new; the one left out is removed.
    sent = [
        {**created["domain_overrides"][1], "domains": ["c.com"]},
        override(["d.com"], IP1),
    ]
    updated = put(client, created["id"], {"domain_overrides": sent})
    assert [o["domains"] for o in updated["domain_overrides"]] == [["c.com"], ["d.com"]]
    assert updated["domain_overrides"][0]["id"] == old_ids[1]
    assert updated["domain_overrides"][1]["id"] not in old_ids
    assert updated["default"] == created["default"] and updated["name"] == created["name"]
    cleared = put(client, created["id"], {"domain_overrides": []})
    assert cleared["domain_overrides"] == []


def test_put_with_an_override_id_of_nothing_is_refused(
    client: TestClient, targets: dict[str, int], store: Store
) -> None:
    created = create(client, rule_body(domain_overrides=[override(["a.com"], IP1)]))
    before = snapshot(store)
    sent = [{**override(["c.com"], IP1), "id": 999_999}]
    messages = failed(
        client.put(f"{URL}/{created['id']}", json={"routing_rule": {"domain_overrides": sent}}),
        400,
        "validation_failed",
    )
    assert messages == [
        "domain_overrides[0].id 999999 is not the id of a row of this record;"
        " leave the id out to add a new row"
    ]
    assert snapshot(store) == before


def test_override_ids_are_kept_while_the_array_is_left_alone(
    client: TestClient, targets: dict[str, int]
) -> None:
    created = create(client, rule_body(domain_overrides=[override(["a.com"], IP1)]))
    renamed = put(client, created["id"], {"name": "renamed"})
    assert renamed["domain_overrides"] == created["domain_overrides"]
    assert renamed["name"] == "renamed"


def test_put_keeps_references_by_id_after_a_target_is_renamed(
    client: TestClient, targets: dict[str, int]
) -> None:
    created = create(client, rule_body(default=distribution(entry({"name": "relay-1"}))))
    ok(
        client.put(
            f"{GA}/relay_servers/{targets['relay-1']}",
            json={"relay_server": {"name": "relay-renamed"}},
        )
    )
    updated = put(client, created["id"], {"name": "rule-renamed"})
    assert updated["default"]["deliver_through"][0]["virtual_mta"] == {
        "id": targets["relay-1"],
        "name": "relay-renamed",
    }


# ---- cycles --------------------------------------------------------------------------------


def test_a_rule_listing_itself_is_refused(
    client: TestClient, store: Store, targets: dict[str, int]
) -> None:
    rule = create(client, rule_body("self"))
    before = snapshot(store)
    patch = {"domain_overrides": [override(["a.com"], IP1, entry({"id": rule["id"]}))]}
    response = client.put(f"{URL}/{rule['id']}", json={"routing_rule": patch})
    assert failed(response, 400, "validation_failed") == [
        "domain_overrides[0].deliver_through[1].virtual_mta would make mail loop (self -> self)"
    ]
    assert snapshot(store) == before


def test_rule_to_rule_to_rule_cycle_is_refused(
    client: TestClient, store: Store, targets: dict[str, int]
) -> None:
    r1 = create(client, rule_body("r1"))
    r2 = create(client, rule_body("r2", default=distribution(entry({"id": r1["id"]}))))
    r3 = create(client, rule_body("r3", default=distribution(entry({"name": "r2"}))))
    before = snapshot(store)
    response = client.put(
        f"{URL}/{r1['id']}",
        json={"routing_rule": {"default": {"deliver_through": [IP1, entry({"id": r3["id"]})]}}},
    )
    assert failed(response, 400, "validation_failed") == [
        "default.deliver_through[1].virtual_mta would make mail loop (r1 -> r3 -> r2 -> r1)"
    ]
    assert snapshot(store) == before
    assert r2["default"]["deliver_through"][0]["virtual_mta"]["name"] == "r1"


def test_rule_to_relay_redirect_to_rule_cycle_is_refused(
    client: TestClient, store: Store, targets: dict[str, int]
) -> None:
    rule = create(client, rule_body("rule-a", default=distribution(entry({"name": "relay-1"}))))
    before = snapshot(store)
    # Closing the loop from the relay server's side...
    response = client.put(
        f"{GA}/relay_servers/{targets['relay-1']}",
        json={"relay_server": {"redirect": {"id": rule["id"]}}},
    )
    assert failed(response, 400, "validation_failed") == [
        "redirect would make mail loop (relay-1 -> rule-a -> relay-1)"
    ]
    assert snapshot(store) == before
    # ...and from the rule's side, through a relay server that redirects to the rule.
    other = create(client, rule_body("rule-b"))
    relay_b = add_relay_server(store, "relay-b", redirect=other["id"])
    before = snapshot(store)
    response = client.put(
        f"{URL}/{other['id']}",
        json={"routing_rule": {"domain_overrides": [override(["x.com"], entry({"id": relay_b}))]}},
    )
    assert failed(response, 400, "validation_failed") == [
        "domain_overrides[0].deliver_through[0].virtual_mta would make mail loop"
        " (rule-b -> relay-b -> rule-b)"
    ]
    assert snapshot(store) == before


def test_sharing_a_target_is_not_a_cycle(client: TestClient, targets: dict[str, int]) -> None:
    a = create(client, rule_body("a"))
    b = create(client, rule_body("b", default=distribution(IP1, entry({"id": a["id"]}))))
    # a diamond: c -> a, c -> b -> a, all ending at ip-1
    c = create(client, rule_body("c", default=distribution(entry({"id": a["id"]}), IP1)))
    updated = put(client, c["id"], {"default": {"deliver_through": [entry({"id": b["id"]})]}})
    assert updated["default"]["deliver_through"][0]["virtual_mta"]["name"] == "b"


# ---- deleting ------------------------------------------------------------------------------


def test_delete_refused_while_a_rule_lists_it(
    client: TestClient, store: Store, targets: dict[str, int]
) -> None:
    relay = {"name": "relay-1"}
    create(client, rule_body("rule-a", default=distribution(entry(relay))))
    # Listed twice by one rule: still one user, one message.
    create(
        client,
        rule_body(
            "rule-b",
            default=distribution(entry(relay)),
            domain_overrides=[override(["a.com"], entry(relay))],
        ),
    )
    before = snapshot(store)
    messages = failed(
        client.delete(f"{GA}/relay_servers/{targets['relay-1']}"), 400, "validation_failed"
    )
    assert len(messages) == 2
    assert "routing_rule 'rule-a'" in messages[0] and "routing_rule 'rule-b'" in messages[1]
    assert snapshot(store) == before


def test_a_rule_used_by_a_rule_cannot_be_deleted(
    client: TestClient, store: Store, targets: dict[str, int]
) -> None:
    inner = create(client, rule_body("inner"))
    outer = create(client, rule_body("outer", default=distribution(entry({"id": inner["id"]}))))
    before = snapshot(store)
    messages = failed(client.delete(f"{URL}/{inner['id']}"), 400, "validation_failed")
    assert messages == [f"it is used by routing_rule 'outer' (id {outer['id']})"]
    assert snapshot(store) == before
    # Deleting the user frees the target.
    assert ok(client.delete(f"{URL}/{outer['id']}")) == {}
    assert ok(client.delete(f"{URL}/{inner['id']}")) == {}
    failed(client.get(f"{URL}/{inner['id']}"), 404, "not_found")


def test_deleting_a_rule_frees_what_it_listed(client: TestClient, targets: dict[str, int]) -> None:
    rule = create(client, rule_body(default=distribution(entry({"name": "relay-1"}))))
    ok(client.delete(f"{URL}/{rule['id']}"))
    assert ok(client.delete(f"{GA}/relay_servers/{targets['relay-1']}")) == {}


# ---- paths ---------------------------------------------------------------------------------


def test_not_found_and_wrong_type(
    client: TestClient, store: Store, targets: dict[str, int]
) -> None:
    other_rule = add_routing_rule(store, "stored", targets["ip-1"])
    assert ok(client.get(f"{URL}/{other_rule}"))["routing_rule"]["name"] == "stored"
    for url in (f"{URL}/999999", f"{URL}/{targets['relay-1']}", f"{URL}/abc"):
        failed(client.get(url), 404, "not_found")
        failed(client.put(url, json=rule_body()), 404, "not_found")
        failed(client.delete(url), 404, "not_found")


@pytest.mark.one_database  # request validation only: the database adds nothing
def test_malformed_bodies_are_invalid_request(
    client: TestClient, store: Store, targets: dict[str, int]
) -> None:
    rule = create(client, rule_body())
    before = snapshot(store)
    for raw in (b"nope", b"[]", b'{"routing_rules": {}}', b'{"routing_rule": []}'):
        headers = {"Content-Type": "application/json"}
        failed(client.post(URL, content=raw, headers=headers), 400, "invalid_request")
        failed(
            client.put(f"{URL}/{rule['id']}", content=raw, headers=headers),
            400,
            "invalid_request",
        )
    assert snapshot(store) == before
