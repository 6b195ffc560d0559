"""The running nodes of a cluster: who holds leases, and which of them are gone.

Every `vmta serve` process registers under a name of its own (the lease owner of the work
it claims), so two processes never share one, even when started from copies of one data
directory. A process that starts looks for the ones that are gone, so that their leases
are released at once instead of when they expire: earlier runs of its own data directory
that have stopped (a restart), and any node whose heartbeat is older than the time-to-live
(dead). Heartbeats are the database's time (``vmta.store.db_clock``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, delete, insert, or_, select, update

from vmta.store.db_clock import database_now
from vmta.store.store import Store
from vmta.store.tables import nodes

N = nodes.c


@dataclass(frozen=True)
class NodeRecord:
    id: str
    data_dir_id: str
    host: str
    boot_id: str | None
    pid: int
    started_at: float
    heartbeat_at: float


def beat(conn: Connection, node_id: str) -> None:
    """This node is alive now (in the caller's transaction)."""
    conn.execute(update(nodes).where(N.id == node_id).values(heartbeat_at=database_now(conn)))


class NodeRegistry:
    def __init__(self, store: Store) -> None:
        self.store = store

    def register(
        self,
        node_id: str,
        *,
        data_dir_id: str,
        host: str,
        boot_id: str | None,
        pid: int,
        ttl: float,
        stopped: Callable[[NodeRecord], bool],
    ) -> list[str]:
        """Register this process, and return the names of the nodes that are gone: the
        runs of ``data_dir_id`` that ``stopped`` says have ended, and every node whose
        heartbeat is more than ``ttl`` seconds old. Their rows are deleted; the caller
        releases their leases."""
        with self.store.write() as conn:
            now = database_now(conn)
            rows = conn.execute(
                select(nodes).where(
                    or_(N.data_dir_id == data_dir_id, N.heartbeat_at < now - ttl),
                    N.id != node_id,
                )
            )
            gone = [
                record.id
                for record in (NodeRecord(**row._mapping) for row in rows)
                if record.heartbeat_at < now - ttl
                or (record.data_dir_id == data_dir_id and stopped(record))
            ]
            if gone:
                conn.execute(delete(nodes).where(N.id.in_(gone)))
            conn.execute(
                insert(nodes).values(
                    id=node_id,
                    data_dir_id=data_dir_id,
                    host=host,
                    boot_id=boot_id,
                    pid=pid,
                    started_at=now,
                    heartbeat_at=now,
                )
            )
            return gone

    def all(self) -> list[NodeRecord]:
        with self.store.read() as conn:
            rows = conn.execute(select(nodes).order_by(N.started_at, N.id))
            return [NodeRecord(**row._mapping) for row in rows]
