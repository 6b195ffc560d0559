"""Opening the database: SQLite (embedded default) or PostgreSQL, and migrating it.

Every failure to open or migrate becomes one of the errors below, with a one-line message
that names the database by its URL with the password hidden: these messages reach the
operator's terminal and logs.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import URL, Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from vmta.domain.errors import PermanentError, TemporaryError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
PG_CONNECT_TIMEOUT = 10  # seconds; an unreachable host fails start-up instead of hanging

# The drivers vmta ships with (pyproject: psycopg 3; sqlite3 is in the standard library).
_DRIVERS = {
    "sqlite": "sqlite",
    "sqlite+pysqlite": "sqlite+pysqlite",
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
}
_EXAMPLES = "postgresql://USER:PASSWORD@HOST:5432/DATABASE or sqlite:////absolute/path/vmta.db"


class DatabaseUnavailable(TemporaryError):
    """The database cannot be opened or reached."""


class InvalidDatabaseUrl(PermanentError):
    """The database URL is malformed or names a database vmta does not support."""


class SchemaError(PermanentError):
    """The database schema cannot be migrated to what this vmta expects."""


def parse_url(url: str) -> URL:
    """The URL, checked, with ``postgresql://`` and ``postgres://`` mapped to psycopg 3."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        # SQLAlchemy's own message repeats the URL, password and all: not shown.
        raise InvalidDatabaseUrl(
            f"the database URL is not a valid URL; expected {_EXAMPLES}"
        ) from None
    driver = _DRIVERS.get(parsed.drivername)
    if driver is None:
        raise InvalidDatabaseUrl(
            f"unsupported database {parsed.drivername!r} in the database URL; vmta supports"
            f" PostgreSQL (psycopg 3) and SQLite: {_EXAMPLES}"
        )
    return parsed.set(drivername=driver)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers (API) and the writer (spool) work at once; FULL sync makes every
    # commit durable before it returns, which is what "accepted" promises.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


# The spool's writes use INSERT ... RETURNING (store/spool_writes.py), SQLite 3.35 and later.
SQLITE_NEEDED = (3, 35, 0)


def require_sqlite(version: tuple[int, int, int]) -> None:
    """Refuse, at start-up and with the versions named, a SQLite library older than the
    spool needs (it is the one the Python build links, not a package of vmta's)."""
    if version < SQLITE_NEEDED:
        have, need = ".".join(map(str, version)), ".".join(map(str, SQLITE_NEEDED))
        raise InvalidDatabaseUrl(
            f"SQLite {need} or later is needed (INSERT ... RETURNING); this Python's "
            f"sqlite3 module uses SQLite {have}: use a newer Python build, or PostgreSQL"
        )


def create_db_engine(url: str, *, pool_size: int = 5) -> Engine:
    """An engine for ``url``, connected once to prove that it works.

    Raises InvalidDatabaseUrl or DatabaseUnavailable with a clear reason on failure.
    """
    parsed = parse_url(url)
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        require_sqlite(sqlite3.sqlite_version_info)
        path = parsed.database
        if path and path != ":memory:" and not path.startswith("file:"):
            parent = Path(path).parent
            if not parent.is_dir():
                raise DatabaseUnavailable(
                    f"cannot open database {safe_url(parsed)}: directory {parent} does not exist"
                )
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 10}
    else:
        kwargs["pool_size"] = pool_size
        kwargs["pool_pre_ping"] = True
        if "connect_timeout" not in parsed.query:
            kwargs["connect_args"] = {"connect_timeout": PG_CONNECT_TIMEOUT}
    engine = create_engine(parsed, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        # Let SQLAlchemy, not pysqlite, decide where transactions begin (the documented
        # recipe), so that BEGIN IMMEDIATE can be used for writes.
        event.listen(engine, "connect", _sqlite_no_autobegin)
        event.listen(engine, "begin", _sqlite_begin)
    try:
        with engine.connect():
            pass
    except SQLAlchemyError as exc:
        engine.dispose()
        raise DatabaseUnavailable(
            f"cannot open database {safe_url(parsed)}: {reason_of(exc, parsed)}"
        ) from None
    return engine


def reason_of(exc: SQLAlchemyError, url: URL) -> str:
    """The driver's own words, on one line, without the password even if it quoted it."""
    text = str(getattr(exc, "orig", None) or exc)
    text = text.split("\n(Background on this error")[0]
    if url.password:
        text = text.replace(str(url.password), "***")
    return re.sub(r"\s+", " ", text).strip()


def _sqlite_no_autobegin(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None


def _sqlite_begin(conn: Any) -> None:
    # A writing transaction (execution option ``vmta_write``) takes the write lock at
    # BEGIN IMMEDIATE, so two writers queue on busy_timeout instead of one failing with
    # "database is locked" when it upgrades from reading to writing. Readers stay deferred
    # and, under WAL, never wait for a writer.
    if conn.get_execution_options().get("vmta_write"):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql("BEGIN")


def safe_url(url: str | URL) -> str:
    """The URL with its password hidden, for messages and logs."""
    parsed = url if isinstance(url, URL) else make_url(url)
    return parsed.render_as_string(hide_password=True)


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def head_revision() -> str | None:
    """The newest schema revision this vmta knows."""
    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


def revision_chain() -> list[str]:
    """Every schema revision this vmta knows, in the order they apply (oldest first). The
    ids are names, not numbers: 0010 applies before 0005 (migrations written on parallel
    branches were chained when merged, and applied revisions are never renamed)."""
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the schema to ``revision`` (Alembic); harmless when it is there already."""
    before = current_revision(engine)
    try:
        command.upgrade(alembic_config(engine), revision)
    except CommandError as exc:
        # Typically: the database was migrated by a newer vmta, whose revision this one
        # does not know. Refuse rather than guess.
        raise SchemaError(
            f"cannot migrate database {safe_url(engine.url)} (schema revision"
            f" {before or 'none'}): {exc}"
        ) from None
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable(
            f"migrating database {safe_url(engine.url)} failed: {reason_of(exc, engine.url)}"
        ) from None
    after = current_revision(engine)
    if after != before:
        log.info("database schema migrated from %s to %s", before or "empty", after)


def current_revision(engine: Engine) -> str | None:
    """The schema revision of the database, or None when it has never been migrated."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return MigrationContext.configure(conn).get_current_revision()
