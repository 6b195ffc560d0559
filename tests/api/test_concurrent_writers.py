"""Concurrent writers over real sockets: what each request checks still holds when it
writes. Parallel creates of one name give one record and "name taken" for the rest;
crossed redirects (A→B and B→A at once) never both succeed, so no loop is ever stored;
a delete racing a new reference to the same record is refused as "in use" or the
reference as unknown, never a 500. On PostgreSQL this needs the control plane's lock;
on SQLite, its single writer."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import httpx
import pytest

from tests.api.helpers import GA
from tests.conftest import TEST_SECRET
from vmta.store.store import Store
from vmta.store.virtual_mtas import VirtualMtaRepository

ROUNDS = 20
PARALLEL_CREATES = 30


def relay(name: str, **changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "name": name,
        "source_ip": {"ip": "127.0.0.2", "hostname": "out.example.com"},
        "destination": {"hostname": "127.0.0.1", "port": 9},
        "throttle_limits": {"max_concurrent_connections": 1, "max_messages_per_hour": 1},
    }
    record.update(changes)
    return {"relay_server": record}


@pytest.fixture
def http(live_api: str) -> Iterator[httpx.Client]:
    limits = httpx.Limits(max_connections=PARALLEL_CREATES, max_keepalive_connections=0)
    headers = {"Authorization": f"Bearer {TEST_SECRET}"}
    with httpx.Client(base_url=live_api, headers=headers, timeout=60, limits=limits) as client:
        yield client


def at_once(calls: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    """Run ``calls`` in parallel threads released together by a barrier."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], httpx.Response]) -> httpx.Response:
        barrier.wait(timeout=30)
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def create(http: httpx.Client, name: str) -> int:
    response = http.post(f"{GA}/relay_servers", json=relay(name))
    assert response.status_code == 200, response.text
    return int(response.json()["data"]["relay_server"]["id"])


def statuses(responses: list[httpx.Response]) -> list[int]:
    found = [r.status_code for r in responses]
    assert 500 not in found, [r.text for r in responses if r.status_code == 500]
    return found


def test_parallel_creates_of_one_name_make_one_record(http: httpx.Client, store: Store) -> None:
    for round_no in range(3):
        name = f"Same-{round_no}"
        body = relay(name)
        post = partial(http.post, f"{GA}/relay_servers", json=body)
        responses = at_once([post] * PARALLEL_CREATES)
        assert sorted(statuses(responses)) == [200] + [400] * (PARALLEL_CREATES - 1)
        for response in responses:
            if response.status_code == 400:
                payload = response.json()
                assert payload["error_code"] == "validation_failed"
                assert payload["error_messages"][0].startswith(f"name '{name}' is already used")
        with store.read() as conn:
            assert VirtualMtaRepository(conn).get_by_name(name) is not None


def test_parallel_template_creates_of_one_name_make_one_template(http: httpx.Client) -> None:
    body = {
        "throttling_template": {
            "name": "Shared",
            "default": {"max_concurrent_connections": 1, "max_messages_per_hour": 1},
        }
    }
    post = partial(http.post, f"{GA}/throttling_templates", json=body)
    responses = at_once([post] * PARALLEL_CREATES)
    assert sorted(statuses(responses)) == [200] + [400] * (PARALLEL_CREATES - 1)


def test_parallel_throttle_program_creates_of_one_name_make_one_program(
    http: httpx.Client,
) -> None:
    body = {
        "throttle_program": {
            "name": "Shared program",
            "backoff": {
                "max_concurrent_connections": {"mode": "fixed", "value": 1},
                "max_messages_per_hour": {"mode": "percent", "value": 50},
            },
            "return_after": 900,
            "notify": "postmaster@example.com",
            "triggers": {"failure_rate": None, "deferral_rate": 20},
        }
    }
    post = partial(http.post, f"{GA}/throttle_programs", json=body)
    responses = at_once([post] * PARALLEL_CREATES)
    assert sorted(statuses(responses)) == [200] + [400] * (PARALLEL_CREATES - 1)


def redirect_of(store: Store, vmta_id: int) -> int | None:
    with store.read() as conn:
        record = VirtualMtaRepository(conn).get(vmta_id)
    assert record is not None
    redirect = getattr(record, "redirect", None)
    return None if redirect is None else int(redirect.id)


def test_crossed_redirects_never_store_a_loop(http: httpx.Client, store: Store) -> None:
    for round_no in range(ROUNDS):
        a = create(http, f"a-{round_no}")
        b = create(http, f"b-{round_no}")
        a_to_b = relay(f"a-{round_no}", redirect={"id": b})
        b_to_a = relay(f"b-{round_no}", redirect={"id": a})
        responses = at_once(
            [
                partial(http.put, f"{GA}/relay_servers/{a}", json=a_to_b),
                partial(http.put, f"{GA}/relay_servers/{b}", json=b_to_a),
            ]
        )
        assert sorted(statuses(responses)) == [200, 400], [r.text for r in responses]
        refused = next(r for r in responses if r.status_code == 400).json()
        assert refused["error_code"] == "validation_failed"
        assert "would make mail loop" in refused["error_messages"][0]
        assert not (redirect_of(store, a) == b and redirect_of(store, b) == a)


def test_delete_racing_a_new_reference_is_refused_cleanly(http: httpx.Client, store: Store) -> None:
    for round_no in range(ROUNDS):
        target = create(http, f"target-{round_no}")
        user = create(http, f"user-{round_no}")
        refer = relay(f"user-{round_no}", redirect={"id": target})
        delete, put = at_once(
            [
                partial(http.delete, f"{GA}/relay_servers/{target}"),
                partial(http.put, f"{GA}/relay_servers/{user}", json=refer),
            ]
        )
        assert sorted(statuses([delete, put])) == [200, 400], (delete.text, put.text)
        if delete.status_code == 200:
            assert put.json()["error_messages"] == [
                f"redirect does not refer to an existing VirtualMTA (id {target})"
            ]
            assert redirect_of(store, user) is None
        else:
            assert delete.json()["error_messages"] == [
                f"it is used by relay_server 'user-{round_no}' (id {user})"
            ]
            assert redirect_of(store, user) == target


def test_template_delete_racing_an_ip_address_that_takes_it(http: httpx.Client) -> None:
    for round_no in range(ROUNDS):
        template = http.post(
            f"{GA}/throttling_templates",
            json={
                "throttling_template": {
                    "name": f"t-{round_no}",
                    "default": {"max_concurrent_connections": 1, "max_messages_per_hour": 1},
                }
            },
        ).json()["data"]["throttling_template"]["id"]
        ip_body = {
            "ip_address": {
                "name": f"ip-{round_no}",
                "ip": "127.0.0.3",
                "hostname": "mta.example.com",
                "throttling_template": {"id": template},
            }
        }
        delete, post = at_once(
            [
                partial(http.delete, f"{GA}/throttling_templates/{template}"),
                partial(http.post, f"{GA}/ip_addresses", json=ip_body),
            ]
        )
        assert sorted(statuses([delete, post])) == [200, 400], (delete.text, post.text)
