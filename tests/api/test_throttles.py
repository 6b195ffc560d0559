"""The Throttles API (contract §2.11) over the node's backoff registry, on a manual clock:
throttles in backoff, the throttles of an IP address, one by domain, ending backoff."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import GA, failed, ok
from tests.conftest import TEST_SECRET
from tests.manual_clock import ManualClock
from vmta.api.app import create_app
from vmta.api.ports import ApiPorts
from vmta.delivery.throttles.throttle_backoffs import ThrottleBackoffs
from vmta.domain.limits.throttle_identity import throttle_origin
from vmta.domain.limits.throttle_rules import ThrottleTable, ip_throttle_key
from vmta.store.store import Store
from vmta.store.throttle_programs import ThrottleProgramRepository
from vmta.store.throttling_templates import ThrottlingTemplateRepository
from vmta.store.virtual_mtas import VirtualMtaRepository

START = 1_782_000_000.0  # 2026-06-21T00:00:00+00:00
LIMITS = {"max_concurrent_connections": 4, "max_messages_per_hour": 100}


@pytest.fixture
def world(store: Store) -> Iterator[tuple[TestClient, ThrottleBackoffs, ManualClock]]:
    registry = ThrottleBackoffs(min_attempts=4)
    clock = ManualClock(START)
    app = create_app(ApiPorts(store, data_plane=None, throttle_states=registry, now=clock.now))
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {TEST_SECRET}"
        yield client, registry, clock


def setup_ip(client: TestClient) -> dict[str, Any]:
    rule = {"domains": ["[*.]a.test"], **LIMITS, "throttle_program": {"id": 1}}
    template = ok(
        client.post(
            f"{GA}/throttling_templates",
            json={"throttling_template": {"name": "tpl", "default": LIMITS, "rules": [rule]}},
        )
    )["throttling_template"]
    ip: dict[str, Any] = ok(
        client.post(
            f"{GA}/ip_addresses",
            json={
                "ip_address": {
                    "name": "ipaddr-1",
                    "ip": "127.0.0.2",
                    "hostname": "mta.example.com",
                    "throttling_template": {"id": template["id"]},
                    "rules": [{"domains": ["def.net", "xyz.net"], **LIMITS}],
                }
            },
        )
    )["ip_address"]
    ip["template"] = template
    return ip


def drive_into_backoff(
    store: Store, registry: ThrottleBackoffs, clock: ManualClock, ip_id: int, domain: str
) -> None:
    """What the engine does for each attempt outcome through the throttle of ``domain``."""
    with store.read() as conn:
        ip = VirtualMtaRepository(conn).get(ip_id)
        assert ip is not None and ip.throttling_template is not None
        template = ThrottlingTemplateRepository(conn).get(ip.throttling_template.id or 0)
        program = ThrottleProgramRepository(conn).get(1)
    match = ThrottleTable(template, ip.rules).match(domain, (), ip.default)  # type: ignore[union-attr]
    key = ip_throttle_key("127.0.0.2", match)
    origin = throttle_origin(ip, template, match, domain)  # type: ignore[arg-type]
    for _ in range(4):
        registry.observe(key, program, "deferred", clock.now(), origin=origin)


def test_a_throttle_in_backoff_is_listed_and_ended_by_hand(
    world: tuple[TestClient, ThrottleBackoffs, ManualClock], store: Store
) -> None:
    client, registry, clock = world
    ip = setup_ip(client)
    assert ok(client.get(f"{GA}/throttles_in_backoff"))["throttles"] == []
    drive_into_backoff(store, registry, clock, ip["id"], "b.a.test")

    # As GreenArrow's page writes the request.
    data = ok(client.get(f"{GA}/throttles_in_backoff", params={"in_backoff": 1}))
    assert data["pagination"]["num_records"] == 1
    [throttle] = data["throttles"]
    template = ip["template"]
    assert throttle == {
        "id": throttle["id"],
        "ip_address": {"id": ip["id"], "name": "ipaddr-1"},
        "throttling_rule": {
            "type": "throttling_template",
            "id": template["rules"][0]["id"],
            "throttling_template": {"id": template["id"], "name": "tpl"},
        },
        "normal_max_messages_per_hour": 100,
        "normal_max_concurrent_connections": 4,
        "domains": ["[*.]a.test"],
        "in_backoff": True,
        "backoff_reason": "throttle_program",
        "backoff_began_at": "2026-06-21T00:00:00+00:00",
        "backoff_ends_at": "2026-06-21T00:10:00+00:00",  # the built-in program: 600 s
        # The built-in program: 1 connection, 25 % of the hourly rate.
        "backoff_max_messages_per_hour": 25,
        "backoff_max_concurrent_connections": 1,
    }
    assert ok(client.get(f"{GA}/ip_addresses/{ip['id']}/throttles"))["throttles"] == [throttle]
    # a.test counts with b.a.test under [*.]a.test: the same throttle.
    one = ok(client.get(f"{GA}/ip_addresses/{ip['id']}/throttles/A.test"))["throttle"]
    assert one == throttle

    ended = ok(client.post(f"{GA}/ip_addresses/{ip['id']}/throttles/a.test/end_backoff"))
    assert ended["throttle"]["in_backoff"] is False
    assert ended["throttle"]["backoff_began_at"] is None
    assert ended["throttle"]["backoff_max_messages_per_hour"] is None
    assert ok(client.get(f"{GA}/throttles_in_backoff"))["throttles"] == []


def test_return_after_ends_backoff(
    world: tuple[TestClient, ThrottleBackoffs, ManualClock], store: Store
) -> None:
    client, registry, clock = world
    ip = setup_ip(client)
    drive_into_backoff(store, registry, clock, ip["id"], "a.test")
    clock.advance(599)
    assert len(ok(client.get(f"{GA}/throttles_in_backoff"))["throttles"]) == 1
    clock.advance(1)
    assert ok(client.get(f"{GA}/throttles_in_backoff"))["throttles"] == []


def test_a_throttle_by_domain_from_the_address_own_rule(
    world: tuple[TestClient, ThrottleBackoffs, ManualClock],
) -> None:
    client, _, _ = world
    ip = setup_ip(client)
    throttle = ok(client.get(f"{GA}/ip_addresses/{ip['id']}/throttles/xyz.net"))["throttle"]
    assert throttle["throttling_rule"] == {
        "type": "ip_address",
        "id": ip["rules"][0]["id"],
        "ip_address": {"id": ip["id"], "name": "ipaddr-1"},
    }
    assert throttle["domains"] == ["def.net", "xyz.net"] and throttle["in_backoff"] is False
    default = ok(client.get(f"{GA}/ip_addresses/{ip['id']}/throttles/other.org"))["throttle"]
    assert default["throttling_rule"]["id"] is None and default["domains"] == ["other.org"]


def test_unknown_ip_address_and_bad_domain(
    world: tuple[TestClient, ThrottleBackoffs, ManualClock],
) -> None:
    client, _, _ = world
    ip = setup_ip(client)
    failed(client.get(f"{GA}/ip_addresses/999999/throttles"), 404, "not_found")
    failed(client.get(f"{GA}/ip_addresses/999999/throttles/a.test"), 404, "not_found")
    failed(client.get(f"{GA}/ip_addresses/{ip['id']}/throttles/a b"), 400, "invalid_request")
    failed(
        client.get(f"{GA}/throttles_in_backoff", params={"page_token": "x"}), 400, "invalid_request"
    )
