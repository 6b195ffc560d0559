"""The database's clock: the one clock every node of a cluster shares.

Leases and node heartbeats are compared across nodes, so they are timed by PostgreSQL's
``clock_timestamp()`` (the time at the call, not at the start of the transaction), never
by a node's clock: two nodes whose clocks disagree by a minute would otherwise take each
other's work a minute early. SQLite is one machine, so its clock is that machine's.
"""

from __future__ import annotations

import time

from sqlalchemy import Connection, Double, cast, func, select

# Seconds since the epoch, as the tables store times.
DB_EPOCH = cast(func.extract("epoch", func.clock_timestamp()), Double)


def database_now(conn: Connection) -> float:
    if conn.dialect.name == "postgresql":
        return float(conn.execute(select(DB_EPOCH)).scalar_one())
    return time.time()


class LeaseClock:
    """The one rule for timing a lease, used by every table that has leases (recipients in
    the spool, event deliveries in the outbox): on PostgreSQL, with ``seconds`` given, a
    lease decision compares with the database's now and a lease written ends ``seconds``
    after it; otherwise (SQLite, or no ``seconds``) the caller's ``now`` and
    ``lease_until`` are used as they are."""

    def __init__(self, dialect: str, seconds: float | None) -> None:
        self.seconds = seconds if dialect == "postgresql" else None

    def times(self, conn: Connection, now: float, lease_until: float) -> tuple[float, float]:
        """(now, lease_until) of a lease decision made in ``conn``'s transaction."""
        if self.seconds is None:
            return now, lease_until
        db_now = database_now(conn)
        return db_now, db_now + self.seconds

    def now(self, conn: Connection, now: float) -> float:
        """The now that leases are compared with (for reads that take no lease)."""
        return self.times(conn, now, now)[0]
