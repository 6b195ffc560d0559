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
