"""The vendor's examples for Dynamic Delivery's neighbours, sent as written (contract §2.6,
§2.8, §2.10): GreenArrow's curl example for a throttling template, an IP address with its
own rules naming programs, and ``used_by`` paged through 250 users by ``page_token``."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.api.helpers import GA, ok

TEST_2 = {
    "name": "test 2",
    "backoff": {
        "max_concurrent_connections": {"mode": "fixed", "value": 1},
        "max_messages_per_hour": {"mode": "percent", "value": 25},
    },
    "return_after": 300,
    "notify": None,
    "triggers": {"failure_rate": 10, "deferral_rate": None},
}

# GreenArrow's API introduction ("Using curl"), character for character in substance:
# the first rule names program 1 by id and by a name that does not exist (the id wins),
# the second names a program by name only.
CURL_EXAMPLE: dict[str, Any] = {
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
                "domains": ["example-6.com", "example-7.com"],
                "throttle_program": {"name": "test 2"},
                "max_concurrent_connections": 0,
                "max_messages_per_hour": 500,
            },
        ],
        "default": {"max_concurrent_connections": 1, "max_messages_per_hour": 60},
    }
}


def test_the_curl_example_as_written_gets_the_documented_shape(client: TestClient) -> None:
    program = ok(client.post(f"{GA}/throttle_programs", json={"throttle_program": TEST_2}))
    program_id = program["throttle_program"]["id"]
    record = ok(client.post(f"{GA}/throttling_templates", json=CURL_EXAMPLE))["throttling_template"]
    rules = record["rules"]
    assert list(record) == ["id", "name", "rules", "default"]
    assert record["name"] == "Example Throttling template"
    assert record["default"] == {"max_concurrent_connections": 1, "max_messages_per_hour": 60}
    assert [list(rule) for rule in rules] == [
        ["id", "domains", "max_concurrent_connections", "max_messages_per_hour", "throttle_program"]
    ] * 2
    assert [rule["throttle_program"] for rule in rules] == [
        {"id": 1, "name": "Automatic Backoff"},
        {"id": program_id, "name": "test 2"},
    ]
    assert [rule["domains"] for rule in rules] == [
        ["example-2.com", "example-1.com"],
        ["example-6.com", "example-7.com"],
    ]
    assert all(isinstance(rule["id"], int) for rule in rules)
    assert ok(client.get(f"{GA}/throttling_templates/{record['id']}")) == {
        "throttling_template": record
    }


def test_an_ip_address_with_its_own_rules(client: TestClient) -> None:
    ok(client.post(f"{GA}/throttle_programs", json={"throttle_program": TEST_2}))
    template = ok(client.post(f"{GA}/throttling_templates", json=CURL_EXAMPLE))
    template_id = template["throttling_template"]["id"]
    body = {
        "ip_address": {
            "name": "ipaddr-1",
            "ip": "10.0.0.28",
            "hostname": "hostname-28.com",
            "throttling_template": {"id": template_id},
            "rules": [
                {
                    "domains": ["def.net", "xyz.net"],
                    "max_concurrent_connections": 4,
                    "max_messages_per_hour": 1000,
                    "throttle_program": {"id": 1},
                },
                {
                    "domains": ["[*.]example-1.com"],
                    "max_concurrent_connections": 1,
                    "max_messages_per_hour": 10,
                    "throttle_program": None,
                },
            ],
        }
    }
    record = ok(client.post(f"{GA}/ip_addresses", json=body))["ip_address"]
    assert record["throttling_template"] == {
        "id": template_id,
        "name": "Example Throttling template",
    }
    sent = body["ip_address"]["rules"]
    assert [{k: v for k, v in rule.items() if k != "id"} for rule in record["rules"]] == [
        {**sent[0], "throttle_program": {"id": 1, "name": "Automatic Backoff"}},
        sent[1],
    ]
    assert ok(client.get(f"{GA}/ip_addresses/{record['id']}")) == {"ip_address": record}


def test_used_by_pages_through_250_users_by_page_token(client: TestClient) -> None:
    program = ok(client.post(f"{GA}/throttle_programs", json={"throttle_program": TEST_2}))
    program_id = program["throttle_program"]["id"]
    rule = {
        "domains": ["a.test"],
        "max_concurrent_connections": 1,
        "max_messages_per_hour": 0,
        "throttle_program": {"id": program_id},
    }
    default = {"max_concurrent_connections": 1, "max_messages_per_hour": 0}
    expected = []
    for i in range(125):
        ip = ok(
            client.post(
                f"{GA}/ip_addresses",
                json={
                    "ip_address": {
                        "name": f"ip-{i}",
                        "ip": "127.0.0.2",
                        "hostname": f"h{i}.example.com",
                        "rules": [rule],
                    }
                },
            )
        )["ip_address"]
        expected.append({"type": "ip_address", "id": ip["id"], "name": f"ip-{i}"})
    templates = []
    for i in range(125):
        body = {"name": f"tpl-{i}", "default": default, "rules": [rule]}
        made = ok(client.post(f"{GA}/throttling_templates", json={"throttling_template": body}))
        templates.append(
            {
                "type": "throttling_template",
                "id": made["throttling_template"]["id"],
                "name": body["name"],
            }
        )
    expected += templates  # IP addresses first, each kind by id

    url = f"{GA}/throttle_programs/{program_id}/used_by"
    seen: list[dict[str, Any]] = []
    pages = []
    data = ok(client.get(url))
    for _ in range(10):  # bounded: 3 pages of 100 are expected
        seen += data["used_by"]
        pages.append(data["pagination"])
        token = data["pagination"]["next_page_token"]
        if token is None:
            break
        data = ok(client.get(url, params={"page_token": token}))
    assert seen == expected
    assert [p["page"] for p in pages] == [0, 1, 2]
    assert {p["num_records"] for p in pages} == {250}
    assert {p["num_pages"] for p in pages} == {3}
    assert [len(p) for p in (seen[:100], seen[100:200], seen[200:])] == [100, 100, 50]
