from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.conftest import TEST_SECRET
from vmta.api.app import build_app, create_app, serve_from
from vmta.api.ports import ApiPorts
from vmta.store.store import Store


@pytest.fixture(scope="session")
def routes_app() -> FastAPI:
    """The application's routes, built once per process (or xdist worker): building them
    is ~50 ms of CPU, times the ~1,500 tests here. Each test gets its own store, ports and
    context (``app_on``), so no credential cache, console session or metric outlives it."""
    return build_app()


def app_on(app: FastAPI, store: Store) -> FastAPI:
    serve_from(app, ApiPorts(store, data_plane=None))
    return app


@pytest.fixture
def client(routes_app: FastAPI, store: Store) -> Iterator[TestClient]:
    """An authenticated client of the app on this test's store (runs on SQLite and
    PostgreSQL)."""
    with TestClient(app_on(routes_app, store), raise_server_exceptions=False) as test_client:
        test_client.headers["Authorization"] = f"Bearer {TEST_SECRET}"
        yield test_client


@pytest.fixture
def anonymous(routes_app: FastAPI, store: Store) -> Iterator[TestClient]:
    """A client without credentials; with ``client`` in the same test, the same app."""
    with TestClient(app_on(routes_app, store), raise_server_exceptions=False) as test_client:
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
