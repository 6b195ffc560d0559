from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.conftest import TEST_SECRET
from vmta.api.app import create_app
from vmta.store.store import Store


@pytest.fixture
def client(store: Store) -> Iterator[TestClient]:
    """An authenticated client of a fresh app (runs on SQLite and PostgreSQL)."""
    app = create_app(store)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        test_client.headers["Authorization"] = f"Bearer {TEST_SECRET}"
        yield test_client


@pytest.fixture
def anonymous(store: Store) -> Iterator[TestClient]:
    app = create_app(store)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client
