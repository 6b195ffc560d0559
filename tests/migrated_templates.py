"""Migrated databases for the ``store`` fixture without running Alembic per test.

Migrating a fresh database costs 0.3-0.8 s (Alembic imports every revision; SQLite fsyncs
each DDL transaction; PostgreSQL creates some 60 relations), and dropping a PostgreSQL
schema another 0.15 s: with about 1,500 tests on a store, that was most of the suite's
time. So each test session (each pytest-xdist worker) migrates once per database kind,
with the real migrations, and every test starts from that migrated state:

- SQLite: the migrated file, copied to the test's own path.
- PostgreSQL: one schema per session, migrated once; before each test every table is
  emptied and given back the rows the migrations seeded, and every sequence its value
  after migrating (so ids start where a fresh schema's would). A test that changed the
  schema itself (a table, an index, a trigger) gets it rebuilt before the next test.

The migrations themselves (upgrade, downgrade, re-run, a newer schema) are tested on
databases Alembic really migrates, in tests/store/test_migrations.py; ``db_url`` and
``pg_url`` still give empty databases.
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, MetaData, Table, create_engine, insert, text
from sqlalchemy.engine import make_url

from vmta.store import database

# What a test could add to or take from the schema besides rows; compared before reuse.
_SHAPE = """
WITH ns AS (SELECT oid FROM pg_namespace WHERE nspname = :schema),
     rel AS (SELECT oid FROM pg_class WHERE relnamespace = (SELECT oid FROM ns))
SELECT (SELECT count(*) FROM rel),
       (SELECT count(*) FROM pg_attribute
         WHERE attrelid IN (SELECT oid FROM rel) AND NOT attisdropped),
       (SELECT count(*) FROM pg_trigger WHERE tgrelid IN (SELECT oid FROM rel)),
       (SELECT count(*) FROM pg_proc WHERE pronamespace = (SELECT oid FROM ns)),
       (SELECT count(*) FROM pg_constraint WHERE connamespace = (SELECT oid FROM ns))
"""
_SEQUENCES = """
SELECT sequencename, coalesce(last_value, start_value), last_value IS NOT NULL
  FROM pg_sequences WHERE schemaname = :schema
"""


def with_search_path(url: str, schema: str) -> str:
    return f"{url}?options=-csearch_path%3D{schema}"


@dataclass
class _Migrated:
    """A migrated PostgreSQL schema and what a test must find in it."""

    schema: str
    url: str
    engine: Engine  # on the schema; resets it
    tables: list[Table]  # in dependency order (referenced tables first)
    rows: dict[str, list[dict[str, Any]]]  # what the migrations seeded
    reset_sql: str  # empties every table, sets every sequence back
    shape: tuple[int, ...]


class MigratedTemplates:
    """Made once per test session (a fixture of that scope); each kind lazily, on the
    first test that needs it."""

    def __init__(self, directory: Path, pg_url: str) -> None:
        self._directory = directory
        self._pg_url = pg_url
        self._sqlite: Path | None = None
        self._pg: _Migrated | None = None
        self._admin: Engine | None = None

    def sqlite_copy(self, url: str) -> None:
        """Put a migrated SQLite database at the path of ``url`` (which must not exist)."""
        if self._sqlite is None:
            template = self._directory / "template.db"
            engine = database.create_db_engine(f"sqlite:///{template}")
            try:
                database.upgrade(engine)
            finally:
                engine.dispose()  # the last connection checkpoints the WAL into the file
            self._sqlite = template
        target = make_url(url).database
        assert target and not Path(target).exists(), url
        shutil.copyfile(self._sqlite, target)

    def postgresql_url(self) -> str:
        """The URL of this session's PostgreSQL schema, as the migrations left it."""
        if self._admin is None:
            self._admin = admin_engine(self._pg_url)
        admin = self._admin
        if self._pg is not None:
            if self._reset(self._pg):
                return self._pg.url
            self._drop(admin)
        self._pg = self._migrate(admin)
        return self._pg.url

    def close(self) -> None:
        if self._admin is not None:
            if self._pg is not None:
                self._drop(self._admin)
            self._admin.dispose()

    def _migrate(self, admin: Engine) -> _Migrated:
        schema = f"t_w_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = with_search_path(self._pg_url, schema)
        engine = database.create_db_engine(url)
        database.upgrade(engine)
        metadata = MetaData()
        with engine.connect() as conn:
            metadata.reflect(conn)
            tables = [t for t in metadata.sorted_tables if t.name != "alembic_version"]
            rows = {t.name: [dict(r) for r in conn.execute(t.select()).mappings()] for t in tables}
            sequences = [
                (str(name), int(value), bool(called))
                for name, value, called in conn.execute(text(_SEQUENCES), {"schema": schema})
            ]
            shape = tuple(conn.execute(text(_SHAPE), {"schema": schema}).one())
        reset_sql = _reset_sql(schema, tables, sequences)
        return _Migrated(schema, url, engine, tables, rows, reset_sql, shape)

    def _reset(self, migrated: _Migrated) -> bool:
        """Back to the migrated state in two round trips; False (nothing done) if the
        schema is not the shape the migrations left."""
        with migrated.engine.begin() as conn:
            shape = tuple(conn.execute(text(_SHAPE), {"schema": migrated.schema}).one())
            if shape != migrated.shape:
                return False
            conn.exec_driver_sql(migrated.reset_sql)
            for table in migrated.tables:
                if migrated.rows[table.name]:
                    conn.execute(insert(table), migrated.rows[table.name])
        return True

    def _drop(self, admin: Engine) -> None:
        assert self._pg is not None
        self._pg.engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{self._pg.schema}" CASCADE'))
        self._pg = None


def _reset_sql(schema: str, tables: list[Table], sequences: list[tuple[str, int, bool]]) -> str:
    """Every table emptied (referencing tables first) and every sequence set back, as one
    string of statements: one round trip."""
    # A test that left a transaction open on a table fails here, not hangs.
    statements = ["SET LOCAL lock_timeout = '20s'"]
    statements += [f'DELETE FROM "{table.name}"' for table in reversed(tables)]
    statements += [
        f'SELECT setval(\'"{schema}"."{name}"\', {value}, {str(called).lower()})'
        for name, value, called in sequences
    ]
    return ";\n".join(statements)


def admin_engine(url: str) -> Engine:
    """An autocommit engine on the server's database, to create and drop schemas."""
    return create_engine(url, isolation_level="AUTOCOMMIT")
