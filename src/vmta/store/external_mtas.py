"""External MTAs (contract §3.2): one row per ``public_ip``, listed in creation order.

Replacing an external MTA (a POST of a ``public_ip`` that exists) updates its row in place,
so it keeps its id and therefore its place in the list: "creation order" is the order in
which each ``public_ip`` was first added. A client that re-posts its whole configuration
sees the list in the same order as before.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, RowMapping, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from vmta.domain.config.external_mta import ExternalMta, ExternalMtaProtocol
from vmta.store.tables import external_mtas

T = external_mtas.c


def _from_row(row: RowMapping) -> ExternalMta:
    return ExternalMta(
        public_ip=row["public_ip"],
        local_ip=row["local_ip"],
        connect_ip=row["connect_ip"],
        connect_port=int(row["connect_port"]),
        protocol=ExternalMtaProtocol(row["protocol"]),
    )


def _values(mta: ExternalMta) -> dict[str, Any]:
    return {
        "public_ip": mta.public_ip,
        "local_ip": mta.local_ip,
        "connect_ip": mta.connect_ip,
        "connect_port": mta.connect_port,
        "protocol": mta.protocol.value,
    }


class ExternalMtaRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def all(self) -> list[ExternalMta]:
        """Every external MTA, in creation order."""
        rows = self.conn.execute(select(external_mtas).order_by(T.id))
        return [_from_row(row._mapping) for row in rows]

    def get(self, public_ip: str) -> ExternalMta | None:
        """The external MTA of ``public_ip`` (canonical text, see ``canonical_ip``)."""
        row = self.conn.execute(select(external_mtas).where(T.public_ip == public_ip)).first()
        return None if row is None else _from_row(row._mapping)

    def put(self, mta: ExternalMta) -> ExternalMta:
        """Create ``mta``, or replace the one with its ``public_ip`` (one row, new values,
        same position). A single INSERT ... ON CONFLICT DO UPDATE, so that two clients
        adding the same ``public_ip`` at once both succeed instead of one hitting the
        unique constraint."""
        values = _values(mta)
        changes = {key: value for key, value in values.items() if key != "public_ip"}
        if self.conn.dialect.name == "postgresql":
            pg = postgresql.insert(external_mtas).values(**values)
            self.conn.execute(pg.on_conflict_do_update(index_elements=[T.public_ip], set_=changes))
        else:
            lite = sqlite.insert(external_mtas).values(**values)
            self.conn.execute(
                lite.on_conflict_do_update(index_elements=[T.public_ip], set_=changes)
            )
        stored = self.get(mta.public_ip)
        assert stored is not None  # written just above, in this transaction
        return stored

    def remove(self, public_ip: str) -> ExternalMta | None:
        """Delete the external MTA of ``public_ip``; the deleted record, or None if there
        was none (also when a concurrent request deleted it first)."""
        found = self.get(public_ip)
        if found is None:
            return None
        result = self.conn.execute(delete(external_mtas).where(T.public_ip == public_ip))
        return found if result.rowcount > 0 else None
