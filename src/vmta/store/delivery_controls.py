"""Pauses and forced errors (MailerQ ``/v1/pauses``, ``/v1/errors``): one row per matcher,
in creation order. POSTing the same matcher fields again updates that row in place."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, RowMapping, delete, select

from vmta.domain.delivery_controls import ForcedError, Matcher, Pause
from vmta.store.tables import mq_forced_errors, mq_pauses
from vmta.store.upsert import upsert

_P = mq_pauses.c
_E = mq_forced_errors.c


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


def _error(row: RowMapping) -> ForcedError:
    return ForcedError(
        _matcher(row),
        code=int(row["code"]),
        extended=row["extended"],
        description=row["description"],
        cluster=bool(row["cluster"]),
        expire=row["expire"],
    )


class PauseRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def all(self) -> list[Pause]:
        rows = self.conn.execute(select(mq_pauses).order_by(_P.id))
        return [_pause(row._mapping) for row in rows]

    def get(self, m: Matcher) -> Pause | None:
        row = self.conn.execute(select(mq_pauses).where(_P.matcher_key == m.key())).first()
        return None if row is None else _pause(row._mapping)

    def put(self, pause: Pause) -> Pause:
        values = _matcher_values(pause.matcher) | {
            "cluster": pause.cluster,
            "expire": pause.expire,
        }
        upsert(self.conn, mq_pauses, values, _P.matcher_key)
        stored = self.get(pause.matcher)
        assert stored is not None
        return stored

    def remove(self, m: Matcher) -> Pause | None:
        found = self.get(m)
        if found is None:
            return None
        result = self.conn.execute(delete(mq_pauses).where(_P.matcher_key == m.key()))
        return found if result.rowcount > 0 else None


class ForcedErrorRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def all(self) -> list[ForcedError]:
        rows = self.conn.execute(select(mq_forced_errors).order_by(_E.id))
        return [_error(row._mapping) for row in rows]

    def get(self, m: Matcher) -> ForcedError | None:
        row = self.conn.execute(select(mq_forced_errors).where(_E.matcher_key == m.key())).first()
        return None if row is None else _error(row._mapping)

    def put(self, error: ForcedError) -> ForcedError:
        values = _matcher_values(error.matcher) | {
            "cluster": error.cluster,
            "expire": error.expire,
            "code": error.code,
            "extended": error.extended,
            "description": error.description,
        }
        upsert(self.conn, mq_forced_errors, values, _E.matcher_key)
        stored = self.get(error.matcher)
        assert stored is not None
        return stored

    def remove(self, m: Matcher) -> ForcedError | None:
        found = self.get(m)
        if found is None:
            return None
        result = self.conn.execute(delete(mq_forced_errors).where(_E.matcher_key == m.key()))
        return found if result.rowcount > 0 else None
