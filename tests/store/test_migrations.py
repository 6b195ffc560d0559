"""Migrations produce exactly ``tables.metadata``, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from vmta.store import database
from vmta.store.credentials import CredentialRepository
from vmta.store.store import Store
from vmta.store.tables import metadata


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = database.create_db_engine(db_url)
    try:
        yield engine
    finally:
        engine.dispose()


def differences(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(context, metadata))


def test_empty_database_migrates_to_exactly_the_tables(engine: Engine) -> None:
    assert inspect(engine).get_table_names() == []
    assert database.current_revision(engine) is None

    database.upgrade(engine)

    assert differences(engine) == []
    tables = set(inspect(engine).get_table_names())
    assert tables == set(metadata.tables) | {"alembic_version"}
    assert database.current_revision(engine) == database.head_revision()


def test_upgrade_twice_is_harmless(engine: Engine) -> None:
    database.upgrade(engine)
    store = Store(engine)
    with store.write() as conn:
        CredentialRepository(conn).put("kept", "0" * 64)

    database.upgrade(engine)

    assert database.current_revision(engine) == database.head_revision()
    assert differences(engine) == []
    with store.read() as conn:
        assert [c.name for c in CredentialRepository(conn).all()] == ["kept"]


def test_store_open_migrates_and_reopens(db_url: str) -> None:
    first = Store.open(db_url)
    first.close()
    second = Store.open(db_url)  # migrating an up-to-date database again
    try:
        assert database.current_revision(second.engine) == database.head_revision()
        assert differences(second.engine) == []
    finally:
        second.close()


def test_unknown_revision_is_refused_clearly(engine: Engine) -> None:
    """A database migrated by a newer vmta: refuse, say why, and touch nothing."""
    database.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'from_the_future'"))

    with pytest.raises(database.SchemaError) as caught:
        database.upgrade(engine)

    message = str(caught.value)
    assert "from_the_future" in message
    assert message.startswith("cannot migrate database ")
    assert database.current_revision(engine) == "from_the_future"


@pytest.mark.one_database
def test_the_schema_head_constant_is_alembics_head() -> None:
    """A start on an up-to-date database skips Alembic by comparing with SCHEMA_HEAD: a
    new migration must move it too, or its tables would never be created."""
    assert database.head_revision() == database.SCHEMA_HEAD


@pytest.mark.one_database
def test_a_start_on_a_migrated_database_imports_no_alembic(tmp_path: Any) -> None:
    """What SCHEMA_HEAD is for: a second open of a migrated store (every start but the
    first, and every worker process) leaves Alembic and Mako unimported, in a fresh
    interpreter."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'vmta.db'}"
    Store.open(url).close()
    probe = (
        "import sys\n"
        "from vmta.store.store import Store\n"
        f"Store.open({url!r}).close()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'mako')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


def test_postgresql_connections_fail_rather_than_hang(pg_url: str) -> None:
    """TCP keepalives, a TCP user timeout and server-side timeouts on every connection
    (docs/outages.md); the URL's own options (its search_path) are kept."""
    from sqlalchemy import text

    from vmta.store.database import create_db_engine

    engine = create_db_engine(pg_url)
    try:
        with engine.connect() as conn:
            shown = {
                name: conn.execute(text(f"SHOW {name}")).scalar()
                for name in ("statement_timeout", "idle_in_transaction_session_timeout")
            }
            schema = conn.execute(text("SELECT current_schemas(false)")).scalar()
            params = conn.connection.driver_connection.info.get_parameters()  # type: ignore[union-attr]
    finally:
        engine.dispose()
    assert shown == {"statement_timeout": "1min", "idle_in_transaction_session_timeout": "1min"}
    assert params["keepalives"] == "1" and params["tcp_user_timeout"] == "20000"
    assert params["keepalives_idle"] == "10" and params["keepalives_count"] == "3"
    assert pg_url.rsplit("%3D", 1)[1] in params["options"]
    assert schema is not None


def test_migrations_run_without_the_statement_timeout(pg_url: str) -> None:
    """An index over a large spool may take longer than a running vmta's statement may."""
    from sqlalchemy import text

    from vmta.store.database import _without_statement_timeout, create_db_engine

    engine = create_db_engine(pg_url)
    migrating = _without_statement_timeout(engine)
    try:
        with migrating.connect() as conn:
            assert conn.execute(text("SHOW statement_timeout")).scalar() == "0"
            assert conn.execute(text("SHOW idle_in_transaction_session_timeout")).scalar() == "1min"
    finally:
        migrating.dispose()
        engine.dispose()
