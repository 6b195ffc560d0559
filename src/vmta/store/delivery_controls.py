"""Pauses and forced errors (MailerQ ``/v1/pauses``, ``/v1/errors``): one row per matcher,
in creation order. POSTing the same matcher fields again updates that row in place.

The two tables share the matcher columns (tables._matcher_columns) and so one repository
logic; a forced error adds its reply columns."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, RowMapping, Table, delete, select

from vmta.domain.paths.delivery_controls import ForcedError, Matcher, Pause
from vmta.store.tables import mq_forced_errors, mq_pauses
from vmta.store.upsert import upsert

Control = TypeVar("Control", Pause, ForcedError)


def _matcher(row: RowMapping) -> Matcher:
    return Matcher(
        pool=row["pool"], mta=row["mta"], domain=row["domain"], ip=row["ip"], tag=row["tag"]
    )


def _matcher_values(m: Matcher) -> dict[str, Any]:
    return {
        "matcher_key": m.key(),
        "pool": m.pool,
        "mta": m.mta,
        "domain": m.domain,
        "ip": m.ip,
        "tag": m.tag,
    }


def _pause(row: RowMapping) -> Pause:
    return Pause(_matcher(row), cluster=bool(row["cluster"]), expire=row["expire"])


def _pause_values(pause: Pause) -> dict[str, Any]:
    return {"cluster": pause.cluster, "expire": pause.expire}


def _error(row: RowMapping) -> ForcedError:
    return ForcedError(
        _matcher(row),
        code=int(row["code"]),
        extended=row["extended"],
        description=row["description"],
        cluster=bool(row["cluster"]),
        expire=row["expire"],
    )


def _error_values(error: ForcedError) -> dict[str, Any]:
    return {
        "cluster": error.cluster,
        "expire": error.expire,
        "code": error.code,
        "extended": error.extended,
        "description": error.description,
    }


class MatcherRepository(Generic[Control]):
    """The rows of ``table``, each a ``Control`` keyed by its matcher."""

    def __init__(
        self,
        conn: Connection,
        table: Table,
        record: Callable[[RowMapping], Control],
        values: Callable[[Control], dict[str, Any]],
    ) -> None:
        self.conn = conn
        self._table = table
        self._record: Callable[[RowMapping], Control] = record
        self._values: Callable[[Control], dict[str, Any]] = values

    def all(self) -> list[Control]:
        rows = self.conn.execute(select(self._table).order_by(self._table.c.id))
        return [self._record(row._mapping) for row in rows]

    def get(self, m: Matcher) -> Control | None:
        t = self._table
        row = self.conn.execute(select(t).where(t.c.matcher_key == m.key())).first()
        return None if row is None else self._record(row._mapping)

    def put(self, control: Control) -> Control:
        values = _matcher_values(control.matcher) | self._values(control)
        upsert(self.conn, self._table, values, self._table.c.matcher_key)
        stored = self.get(control.matcher)
        assert stored is not None
        return stored

    def remove(self, m: Matcher) -> Control | None:
        found = self.get(m)
        if found is None:
            return None
        t = self._table
        result = self.conn.execute(delete(t).where(t.c.matcher_key == m.key()))
        return found if result.rowcount > 0 else None


class PauseRepository(MatcherRepository[Pause]):
    def __init__(self, conn: Connection) -> None:
        super().__init__(conn, mq_pauses, _pause, _pause_values)


class ForcedErrorRepository(MatcherRepository[ForcedError]):
    def __init__(self, conn: Connection) -> None:
        super().__init__(conn, mq_forced_errors, _error, _error_values)
