"""The store: one engine, short transactions, repositories that work on a connection."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError

from vmta.store import database
from vmta.store.database import DatabaseUnavailable


class Store:
    """Owns the engine. Every unit of work gets its own connection and transaction, so no
    connection is ever shared between concurrent tasks."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> Store:
        engine = database.create_db_engine(url)
        if migrate:
            database.upgrade(engine)
        return cls(engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self._unavailable_as_temporary(), self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A transaction that will write: committed on success, rolled back on error.

        A database that cannot take the transaction (SQLite's "database or disk is full",
        PostgreSQL's disk_full or a lost connection: the driver's OperationalError, PEP 249)
        raises DatabaseUnavailable, a temporary error: nothing was written, and the same
        work may succeed later."""
        with self._unavailable_as_temporary(), self.engine.connect() as conn:
            conn = conn.execution_options(vmta_write=True)
            with conn.begin():
                yield conn

    @contextmanager
    def _unavailable_as_temporary(self) -> Iterator[None]:
        try:
            yield
        except OperationalError as exc:
            reason = database.reason_of(exc, self.engine.url)
            raise DatabaseUnavailable(
                f"database {database.safe_url(self.engine.url)} failed: {reason}"
            ) from exc

    def close(self) -> None:
        self.engine.dispose()
