from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import uvicorn
from fastapi.testclient import TestClient

from tests.conftest import TEST_SECRET
from vmta.api.app import create_app
from vmta.api.ports import ApiPorts
from vmta.store.store import Store


@pytest.fixture
def client(store: Store) -> Iterator[TestClient]:
    """An authenticated client of a fresh app (runs on SQLite and PostgreSQL)."""
    app = create_app(ApiPorts(store, data_plane=None))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        test_client.headers["Authorization"] = f"Bearer {TEST_SECRET}"
        yield test_client


@pytest.fixture
def anonymous(store: Store) -> Iterator[TestClient]:
    app = create_app(ApiPorts(store, data_plane=None))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@contextmanager
def serving(store: Store) -> Iterator[str]:
    """vmta's API on ``store``, served by uvicorn on an ephemeral port of 127.0.0.1; yields
    its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    config = uvicorn.Config(
        create_app(ApiPorts(store, data_plane=None)),
        log_config=None,
        access_log=False,
        lifespan="off",
    )
    api = uvicorn.Server(config)
    thread = threading.Thread(target=api.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10  # bounds a hang; measures nothing
    while not api.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert api.started, "uvicorn did not start"
    host, port = sock.getsockname()[:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        api.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def live_api(store: Store) -> Iterator[str]:
    """The base URL of vmta's API on the test's store, across a real socket (streamed
    bodies, parallel writers)."""
    with serving(store) as url:
        yield url
