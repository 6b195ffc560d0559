"""Shared fixtures: a migrated store on SQLite and on PostgreSQL, and an API client.

PostgreSQL is the real server at 127.0.0.1:5432 (database ``test``, trust auth; override
with ``VMTA_TEST_PG_URL``). ``pg_url`` and ``db_url`` give a test its own empty schema,
dropped afterwards; ``store`` gives it a migrated database without running the migrations
per test (tests/migrated_templates.py). Without a reachable server the PostgreSQL half is
skipped with a printed reason, except under CI (``CI=true``), where it fails: CI must not
skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import OperationalError

from tests.migrated_templates import MigratedTemplates, admin_engine
from vmta.domain.config.credential import hash_secret
from vmta.store.credentials import CredentialRepository
from vmta.store.store import Store

pytest_plugins = [
    "tests.slow_first",
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


def cap_sqlite_growth(store: Store, spare_pages: int = 2) -> None:
    """Let a SQLite store grow by at most ``spare_pages`` pages past what it holds now:
    a write that needs more gets SQLITE_FULL, "database or disk is full", as on a full
    disk. ``max_page_count`` is a property of each connection, so it is set on every new
    one, and the pool's connections are replaced at once."""
    with store.read() as conn:
        pages = int(conn.execute(text("PRAGMA page_count")).scalar_one())

    def cap(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages + spare_pages}")

    event.listen(store.engine, "connect", cap)
    store.engine.dispose()


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


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[Engine]:
    """An autocommit engine on the server's database for the whole session (or xdist
    worker), to create and drop schemas."""
    problem = pg_problem()
    if problem:
        skip_or_fail(problem)
    admin = admin_engine(PG_URL)
    try:
        yield admin
    finally:
        admin.dispose()


@pytest.fixture
def pg_url(pg_admin: Engine) -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh, empty schema."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with pg_admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with pg_admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> str:
    """Every test that uses this (through ``db_url`` or ``store``) runs twice: on SQLite
    and on PostgreSQL."""
    return str(request.param)


@pytest.fixture
def db_url(request: pytest.FixtureRequest, database: str, tmp_path: Path) -> str:
    """An empty database (SQLite file or PostgreSQL schema) that nothing has migrated."""
    if database == "sqlite":
        return f"sqlite:///{tmp_path / 'vmta.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture(scope="session")
def migrated_templates(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[MigratedTemplates]:
    templates = MigratedTemplates(tmp_path_factory.mktemp("templates"), PG_URL)
    try:
        yield templates
    finally:
        templates.close()


@pytest.fixture
def store(
    request: pytest.FixtureRequest,
    database: str,
    tmp_path: Path,
    migrated_templates: MigratedTemplates,
) -> Iterator[Store]:
    """A migrated store (the ``admin`` API credential in it), on SQLite and PostgreSQL:
    a copy of a file migrated once per session, or this session's migrated schema emptied
    back to its migrated state (tests/migrated_templates.py). ``store.engine.url`` is its
    URL, for a second engine or process on the same database."""
    if database == "sqlite":
        url = f"sqlite:///{tmp_path / 'vmta.db'}"
        migrated_templates.sqlite_copy(url)
    else:
        request.getfixturevalue("pg_admin")  # skips, or fails under CI, without a server
        url = migrated_templates.postgresql_url()
    opened = Store.open(url, migrate=False)
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
        twin = callspec is not None and "postgresql" in (
            callspec.params.get("database"),
            callspec.params.get("database_url"),  # tests/e2e's servers
        )
        if twin and item.get_closest_marker(ONE_DATABASE) is not None:
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
