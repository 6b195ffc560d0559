"""Lists and pagination (contract §2.2), through relay servers."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.helpers import GA, failed, ok
from vmta.domain.config.virtual_mta import Limits, RelayServer
from vmta.store.store import Store
from vmta.store.virtual_mtas import VirtualMtaRepository


def add_relays(store: Store, count: int) -> list[int]:
    with store.write() as conn:
        repo = VirtualMtaRepository(conn)
        return [
            repo.insert(
                RelayServer(
                    name=f"relay-{i:04d}",
                    source_ip="127.0.0.2",
                    source_hostname="out.example.com",
                    destination_hostname="127.0.0.1",
                    destination_port=25,
                    username=None,
                    password=None,
                    throttle_limits=Limits(0, 0),
                )
            )
            for i in range(count)
        ]


def test_page_tokens_walk_every_record_once(client: TestClient, store: Store) -> None:
    ids = add_relays(store, 250)
    seen: list[int] = []
    data = ok(client.get(f"{GA}/relay_servers"))
    pages = [data["pagination"]]
    seen += [r["id"] for r in data["relay_servers"]]
    while data["pagination"]["next_page_token"]:
        token = data["pagination"]["next_page_token"]
        data = ok(client.get(f"{GA}/relay_servers", params={"page_token": token}))
        pages.append(data["pagination"])
        seen += [r["id"] for r in data["relay_servers"]]
    assert seen == ids
    assert [p["page"] for p in pages] == [0, 1, 2]
    assert all(p["num_records"] == 250 and p["num_pages"] == 3 for p in pages)
    assert pages[-1]["next_page_token"] is None


def test_page_number_and_token_agree(client: TestClient, store: Store) -> None:
    add_relays(store, 150)
    first = ok(client.get(f"{GA}/relay_servers", params={"page": 0}))
    by_number = ok(client.get(f"{GA}/relay_servers", params={"page": 1}))
    by_token = ok(
        client.get(
            f"{GA}/relay_servers",
            params={"page_token": first["pagination"]["next_page_token"], "page": 0},
        )
    )
    assert by_number == by_token  # page_token wins over page
    assert len(by_number["relay_servers"]) == 50


def test_page_past_the_end_is_empty(client: TestClient, store: Store) -> None:
    add_relays(store, 3)
    data = ok(client.get(f"{GA}/relay_servers", params={"page": 5}))
    assert data["relay_servers"] == []
    assert data["pagination"]["num_records"] == 3
    assert data["pagination"]["next_page_token"] is None


def test_per_page_extension(client: TestClient, store: Store) -> None:
    add_relays(store, 5)
    data = ok(client.get(f"{GA}/relay_servers", params={"per_page": 2}))
    assert len(data["relay_servers"]) == 2
    assert data["pagination"]["per_page"] == 2 and data["pagination"]["num_pages"] == 3
    token = data["pagination"]["next_page_token"]
    data = ok(client.get(f"{GA}/relay_servers", params={"page_token": token}))
    assert data["pagination"]["page"] == 1 and len(data["relay_servers"]) == 2


def test_bad_query_parameters(client: TestClient) -> None:
    for params in (
        {"page": "-1"},
        {"page": "x"},
        {"per_page": "0"},
        {"per_page": "1001"},
        {"page_token": "garbage!"},
        {"page_token": "eyJ4IjoxfQ"},
    ):
        failed(client.get(f"{GA}/relay_servers", params=params), 400, "invalid_request")


def test_token_of_another_list_is_refused(client: TestClient, store: Store) -> None:
    add_relays(store, 150)
    token = ok(client.get(f"{GA}/relay_servers"))["pagination"]["next_page_token"]
    failed(client.get(f"{GA}/ip_addresses", params={"page_token": token}), 400, "invalid_request")
