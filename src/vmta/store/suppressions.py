"""Suppressions (MailerQ ``/v1/suppressions``): one row per value (ignoring case), in
creation order; POSTing a value again replaces its entry in place."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, RowMapping, delete, select

from vmta.domain.paths.suppression import Suppression, SuppressionType, suppression_key
from vmta.store.tables import mq_suppressions
from vmta.store.upsert import upsert

S = mq_suppressions.c


def _from_row(row: RowMapping) -> Suppression:
    return Suppression(
        value=row["value"],
        type=SuppressionType(row["type"]),
        code=int(row["code"]),
        extended=row["extended"],
        description=row["description"],
    )


class SuppressionRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def all(self) -> list[Suppression]:
        rows = self.conn.execute(select(mq_suppressions).order_by(S.id))
        return [_from_row(row._mapping) for row in rows]

    def first(self, limit: int) -> list[Suppression]:
        """At most ``limit`` entries, in creation order (a full load is only for a short
        list: the engine asks for ``limit + 1`` to learn whether the list is short)."""
        rows = self.conn.execute(select(mq_suppressions).order_by(S.id).limit(limit))
        return [_from_row(row._mapping) for row in rows]

    def keys_from(self, first: int) -> list[tuple[int, str]]:
        """(id, key) of the entries numbered ``first`` or more, in creation order."""
        rows = self.conn.execute(select(S.id, S.value_key).where(S.id >= first).order_by(S.id))
        return [(int(row[0]), str(row[1])) for row in rows]

    def matching(self, keys: Sequence[str]) -> list[Suppression]:
        """The entries whose key is one of ``keys``: one look-up of the unique index on
        ``value_key``, whatever the number of entries."""
        rows = self.conn.execute(select(mq_suppressions).where(S.value_key.in_(list(keys))))
        return [_from_row(row._mapping) for row in rows]

    def get(self, value: str) -> Suppression | None:
        row = self.conn.execute(
            select(mq_suppressions).where(S.value_key == suppression_key(value))
        ).first()
        return None if row is None else _from_row(row._mapping)

    def add_unless_listed(self, entry: Suppression) -> None:
        """Add ``entry`` unless its address is listed already: an entry an operator made
        (with its own code and text) is kept as it is. What vmta adds by itself (a bad
        address, a complaint) goes through here."""
        if self.get(entry.value) is None:
            self.put(entry)

    def put(self, entry: Suppression) -> Suppression:
        values = {
            "value_key": entry.key,
            "value": entry.value,
            "type": entry.type.value,
            "code": entry.code,
            "extended": entry.extended,
            "description": entry.description,
        }
        upsert(self.conn, mq_suppressions, values, S.value_key)
        stored = self.get(entry.value)
        assert stored is not None
        return stored

    def remove(self, value: str) -> Suppression | None:
        found = self.get(value)
        if found is None:
            return None
        key = suppression_key(value)
        result = self.conn.execute(delete(mq_suppressions).where(S.value_key == key))
        return found if result.rowcount > 0 else None
