"""A database that cannot take a write (SQLite's "database or disk is full") or cannot be
reached at all gets 503 in the family's format with Retry-After: the client may try again,
nothing was changed, and no internals are shown."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from tests.api.helpers import GA, ok, snapshot
from tests.conftest import TEST_SECRET, cap_sqlite_growth
from vmta.api.app import create_app
from vmta.api.ports import ApiPorts
from vmta.domain.config.credential import hash_secret
from vmta.store.credentials import CredentialRepository
from vmta.store.store import Store

UNAVAILABLE = (
    "The database cannot serve the request now (it is full or unreachable); try again later."
)
ATTEMPTS = 2000  # bounds the filling loop: each relay server takes well under a page


def relay(n: int) -> dict[str, Any]:
    return {
        "relay_server": {
            "name": f"relay-{n}-" + "x" * 150,
            "source_ip": {"ip": "127.0.0.2", "hostname": "out.example.com"},
            "destination": {"hostname": "smtp.example.com", "port": 25},
            "throttle_limits": {"max_concurrent_connections": 1, "max_messages_per_hour": 1},
        }
    }


@pytest.fixture
def full_store(tmp_path: Path) -> Iterator[Store]:
    """A SQLite store that may not grow past the pages it has once migrated."""
    store = Store.open(f"sqlite:///{tmp_path / 'vmta.db'}")
    with store.write() as conn:
        CredentialRepository(conn).put("admin", hash_secret(TEST_SECRET))
    cap_sqlite_growth(store)
    try:
        yield store
    finally:
        store.close()


def test_greenarrow_write_on_a_full_database_is_503(full_store: Store) -> None:
    app = create_app(ApiPorts(full_store, data_plane=None))
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {TEST_SECRET}"
        for n in range(ATTEMPTS):
            before = snapshot(full_store)
            response = client.post(f"{GA}/relay_servers", json=relay(n))
            if response.status_code != 200:
                break
        else:
            pytest.fail(f"{ATTEMPTS} relay servers fitted in a capped database")
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == "30"
        assert response.json() == {
            "success": False,
            "data": None,
            "error_code": "service_unavailable",
            "error_messages": [UNAVAILABLE],
        }
        assert snapshot(full_store) == before
        # Reading still works, and says what is there.
        listed = ok(client.get(f"{GA}/relay_servers", params={"per_page": 1}))
        assert listed["pagination"]["num_records"] == n

        external = {"public_ip": "192.0.2.1", "local_ip": "10.0.0.1", "connect_port": 1080}
        for i in range(ATTEMPTS):
            response = client.post(
                "/v1/externalmtas", json={**external, "public_ip": f"10.{i // 250}.{i % 250}.1"}
            )
            if response.status_code != 200:
                break
        assert response.status_code == 503
        assert response.json() == {"error": UNAVAILABLE}


@pytest.fixture
def unreachable(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A store whose database has gone away: nothing listens on its port, or its file's
    directory vanished."""
    if request.param == "postgresql":
        engine = create_engine(
            "postgresql+psycopg://postgres@127.0.0.1:1/test", connect_args={"connect_timeout": 2}
        )
    else:
        engine = create_engine(f"sqlite:///{tmp_path / 'gone' / 'vmta.db'}")
    store = Store(engine)
    try:
        yield store
    finally:
        store.close()


@pytest.mark.parametrize("unreachable", ["sqlite", "postgresql"], indirect=True)
def test_unreachable_database_is_503_not_401_or_500(unreachable: Store) -> None:
    with TestClient(
        create_app(ApiPorts(unreachable, data_plane=None)), raise_server_exceptions=False
    ) as client:
        client.headers["Authorization"] = f"Bearer {TEST_SECRET}"
        ga = client.get(f"{GA}/relay_servers")
        assert ga.status_code == 503
        assert ga.json()["error_code"] == "service_unavailable"
        mq = client.get("/v1/externalmtas")
        assert (mq.status_code, mq.json()) == (503, {"error": UNAVAILABLE})
        assert client.get("/api/health").status_code == 200
