"""Shared fixtures: a migrated store on SQLite and on PostgreSQL, and an API client.

PostgreSQL is the real server at 127.0.0.1:5432 (database ``test``, trust auth; override
with ``VMTA_TEST_PG_URL``). Each test gets its own schema, dropped afterwards. Without a
reachable server the PostgreSQL half is skipped with a printed reason, except under CI
(``CI=true``), where it fails: CI must not skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from vmta.domain.credential import hash_secret
from vmta.store.credentials import CredentialRepository
from vmta.store.store import Store

pytest_plugins = [
    "tests.peers.sink",
    "tests.peers.proxies",
    "tests.peers.scripted",
    "tests.peers.dns",
    "tests.delivery.engine_harness",
    "tests.peers.redis_db",
    "tests.peers.http_receiver",
]

PG_URL = os.environ.get("VMTA_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"
TEST_SECRET = "vmta_test-secret-0123456789abcdefghijklmnopqrstuvwxyz"


def skip_or_fail(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI must not skip)")
    pytest.skip(reason)


def _pg_available() -> str | None:
    try:
        engine = create_engine(PG_URL)
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
    except OperationalError as exc:
        return f"PostgreSQL not reachable at {PG_URL}: {exc.orig}"
    return None


_PG_PROBLEM: list[str | None] = []


def pg_problem() -> str | None:
    if not _PG_PROBLEM:
        _PG_PROBLEM.append(_pg_available())
    return _PG_PROBLEM[0]


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh, empty schema."""
    problem = pg_problem()
    if problem:
        skip_or_fail(problem)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Every test that uses this runs twice: on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'vmta.db'}"
    else:
        yield request.getfixturevalue("pg_url")


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    opened = Store.open(db_url)
    with opened.write() as conn:
        CredentialRepository(conn).put("admin", hash_secret(TEST_SECRET))
    try:
        yield opened
    finally:
        opened.close()


ONE_DATABASE = "one_database"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test (or a table row) marked ``one_database`` checks request validation that
    never reaches the store, so its PostgreSQL twin would test nothing more than its
    SQLite one: the twin is deselected (not skipped, so CI's no-skip rule holds). Store
    behaviour (uniqueness, references, paging over the store) keeps both databases."""
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        twin = callspec is not None and callspec.params.get("db_url") == "postgresql"
        if twin and item.get_closest_marker(ONE_DATABASE) is not None:
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
