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
from typing import TYPE_CHECKING, Any

from sqlalchemy import URL, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.pool import NullPool

from vmta.domain.errors import PermanentError, TemporaryError

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# The newest schema revision, written here as well as in migrations/versions/: a start on
# a database that is already there (every start but the first, and every worker process)
# then never imports Alembic and Mako, about 11 MB of memory in each process.
# tests/store/test_migrations.py checks that this is Alembic's head.
SCHEMA_HEAD = "0014"
PG_CONNECT_TIMEOUT = 10  # seconds; an unreachable host fails start-up instead of hanging
# A PostgreSQL server that stops answering without resetting the connection (a partition,
# a dead host) must not hold a connection for the ~15 minutes of Linux's retransmission
# defaults: TCP keepalives probe an idle connection (libpq keepalives_*), and a TCP user
# timeout (RFC 5482; Linux TCP_USER_TIMEOUT, libpq tcp_user_timeout) drops one whose sent
# data stays unacknowledged. The server ends a statement that runs too long, and a
# transaction whose client went silent (its locks on recipients released).
PG_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5}
PG_KEEPALIVE_COUNT = 3
PG_TCP_USER_TIMEOUT_MS = 20_000
PG_STATEMENT_TIMEOUT_MS = 60_000
PG_IDLE_IN_TRANSACTION_TIMEOUT_MS = 60_000

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


SQLITE_CACHE_KIB = 512  # per connection (PRAGMA cache_size; negative means KiB)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers (API) and the writer (spool) work at once; FULL sync makes every
    # commit durable before it returns, which is what "accepted" promises.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    # Each connection has a page cache of its own, 2 MB by default, and every process holds
    # several (four each under the relay bench). A message body passes through it once,
    # written or read for its delivery, and is not read again; meanwhile it evicts the
    # B-tree's inner pages, and the file's pages stay in the kernel's cache either way.
    # 512 KiB: -7 MB PSS at 100 KB in the relay bench (docs/PERFORMANCE.md, "Round 5:
    # memory").
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
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
        kwargs["connect_args"] = pg_connect_args(parsed)
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


# What says the database is away rather than that it refused a statement: a lost or
# refused connection, a timeout (TCP user timeout, statement timeout), a full pool.
_AWAY = (OperationalError, InterfaceError, DisconnectionError, PoolTimeout, TimeoutError, OSError)


def as_unavailable(exc: BaseException) -> BaseException:
    """``exc`` as DatabaseUnavailable when it says the database is away (a TemporaryError:
    what waits for the database waits on), else unchanged."""
    if isinstance(exc, TemporaryError) or not isinstance(exc, _AWAY):
        return exc
    text = str(getattr(exc, "orig", None) or exc).split("\n", 1)[0][:300]
    error = DatabaseUnavailable(f"the database is unavailable: {type(exc).__name__}: {text}")
    error.__cause__ = exc
    return error


def pg_connect_args(url: URL) -> dict[str, Any]:
    """libpq parameters for a connection that fails rather than hangs (see above). What
    the URL sets itself wins; server settings are added to its ``options``."""
    query = url.query
    args: dict[str, Any] = {}
    defaults: dict[str, Any] = {
        "connect_timeout": PG_CONNECT_TIMEOUT,
        **PG_KEEPALIVES,
        "keepalives_count": PG_KEEPALIVE_COUNT,
        "tcp_user_timeout": PG_TCP_USER_TIMEOUT_MS,
    }
    for key, value in defaults.items():
        if key not in query:
            args[key] = value
    own = query.get("options", "")
    options = own if isinstance(own, str) else " ".join(own)
    for name, value in (
        ("statement_timeout", PG_STATEMENT_TIMEOUT_MS),
        ("idle_in_transaction_session_timeout", PG_IDLE_IN_TRANSACTION_TIMEOUT_MS),
    ):
        if name not in options:
            options = f"{options} -c {name}={value}".strip()
    args["options"] = options
    return args


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
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def head_revision() -> str | None:
    """The newest schema revision this vmta knows, as Alembic reads its scripts."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


def _without_statement_timeout(engine: Engine) -> Engine:
    """For a migration: an index built over a large spool may rightly take longer than
    a statement of the running vmta is allowed to (PostgreSQL only; no pool to dispose:
    each connection closes when the migration is done with it)."""
    if engine.dialect.name != "postgresql":
        return engine
    args = pg_connect_args(engine.url)
    args["options"] = args["options"].replace(
        f"statement_timeout={PG_STATEMENT_TIMEOUT_MS}", "statement_timeout=0"
    )
    return create_engine(engine.url, poolclass=NullPool, connect_args=args)


def revision_chain() -> list[str]:
    """Every schema revision this vmta knows, in the order they apply (oldest first). The
    ids are names, not numbers: 0010 applies before 0005 (migrations written on parallel
    branches were chained when merged, and applied revisions are never renamed)."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(MIGRATIONS_DIR))
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the schema to ``revision`` (Alembic); harmless when it is there already."""
    before = current_revision(engine)
    if revision == "head" and before == SCHEMA_HEAD:
        return
    from alembic import command
    from alembic.util.exc import CommandError

    try:
        command.upgrade(alembic_config(_without_statement_timeout(engine)), revision)
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
        # Alembic's own table, read as Alembic's MigrationContext reads it (one row on
        # vmta's unbranched history), without importing Alembic.
        rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        if len(rows) > 1:
            raise SchemaError(f"database {safe_url(engine.url)} has several schema heads: {rows}")
        return str(rows[0]) if rows else None
