"""IP pools and their members (MailerQ ``/v1/pools``, ``/v1/poolips``), in creation order."""

from __future__ import annotations

from sqlalchemy import Connection, delete, select

from vmta.domain.config.ip_pool import IpPool
from vmta.store.tables import mq_pool_ips, mq_pools
from vmta.store.upsert import upsert

P = mq_pools.c
I = mq_pool_ips.c  # noqa: E741 - the table's column collection, as P and T elsewhere


class IpPoolRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def all(self) -> list[IpPool]:
        rows = self.conn.execute(select(P.name, P.description).order_by(P.id))
        return [IpPool(row.name, row.description) for row in rows]

    def get(self, name: str) -> IpPool | None:
        row = self.conn.execute(select(P.name, P.description).where(P.name == name)).first()
        return None if row is None else IpPool(row.name, row.description)

    def put(self, pool: IpPool) -> IpPool:
        """Create the pool, or update its description (it keeps its place and members)."""
        upsert(self.conn, mq_pools, {"name": pool.name, "description": pool.description}, P.name)
        stored = self.get(pool.name)
        assert stored is not None
        return stored

    def remove(self, name: str) -> IpPool | None:
        """Delete the pool and its members; the deleted pool, or None if there was none."""
        found = self._id(name)
        if found is None:
            return None
        pool = self.get(name)
        self.conn.execute(delete(mq_pool_ips).where(I.pool_id == found))
        self.conn.execute(delete(mq_pools).where(P.id == found))
        return pool

    def _id(self, name: str) -> int | None:
        value = self.conn.execute(select(P.id).where(P.name == name)).scalar()
        return None if value is None else int(value)

    def members(self, name: str) -> list[str] | None:
        """The pool's addresses in the order they were added; None for an unknown pool."""
        pool_id = self._id(name)
        if pool_id is None:
            return None
        rows = self.conn.execute(select(I.ip).where(I.pool_id == pool_id).order_by(I.id))
        return [row.ip for row in rows]

    def add_member(self, name: str, ip: str) -> bool:
        """Put ``ip`` (canonical text) in the pool, moving it from any other pool. False
        for an unknown pool."""
        pool_id = self._id(name)
        if pool_id is None:
            return False
        upsert(self.conn, mq_pool_ips, {"ip": ip, "pool_id": pool_id}, I.ip)
        return True

    def remove_member(self, name: str, ip: str) -> bool | None:
        """Take ``ip`` out of the pool: True if it was in it, False if not, None for an
        unknown pool."""
        pool_id = self._id(name)
        if pool_id is None:
            return None
        result = self.conn.execute(delete(mq_pool_ips).where(I.pool_id == pool_id, I.ip == ip))
        return result.rowcount > 0

    def membership(self) -> dict[str, str]:
        """Every pooled address and the name of its pool (for the delivery side)."""
        rows = self.conn.execute(
            select(I.ip, P.name).join(mq_pools, P.id == I.pool_id).order_by(I.id)
        )
        return {row.ip: row.name for row in rows}
