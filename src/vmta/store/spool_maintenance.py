"""Changing the spool by operator action and housekeeping: retry a message now, delete
it, purge finished messages (``SqlSpool.housekeeping``; the reads for people are
``SqlSpool.inspector``, store/spool_inspection.py)."""

from __future__ import annotations

from sqlalchemy import delete, func, select, update

from vmta.domain.attempts.spool_records import QUEUED
from vmta.store.store import Store
from vmta.store.tables import attempts, messages, recipients

R = recipients.c
M = messages.c

# The name of the purge's advisory lock: per schema, as one PostgreSQL database may hold
# several vmta clusters (one per schema), whose purges do not exclude each other.
PURGE_LOCK = func.concat(func.current_schema(), ".vmta.purge")


class SpoolHousekeeping:
    """Operator actions on stored messages, and the purge of finished ones."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def retry_now(self, message_id: str, now: float) -> int:
        """Make every queued recipient of the message due now."""
        with self.store.write() as conn:
            result = conn.execute(
                update(recipients)
                .where(R.message_id == message_id, R.state == QUEUED)
                .values(next_attempt_at=now, updated_at=now)
            )
            return int(result.rowcount)

    def delete_message(self, message_id: str) -> bool:
        with self.store.write() as conn:
            conn.execute(delete(attempts).where(attempts.c.message_id == message_id))
            conn.execute(delete(recipients).where(R.message_id == message_id))
            result = conn.execute(delete(messages).where(M.id == message_id))
            return result.rowcount > 0

    def purge_finished(self, before: float, limit: int = 1000) -> int:
        """Delete up to ``limit`` messages received before ``before`` whose every recipient
        is final (delivered or failed), with their recipients and attempts.

        On PostgreSQL one node of the cluster purges at a time: a purge that finds another
        one running (a transaction-scoped advisory lock, per schema) returns 0 and leaves
        the work to it, so nodes never delete the same rows at once."""
        with self.store.write() as conn:
            if (
                conn.dialect.name == "postgresql"
                and not conn.execute(
                    select(func.pg_try_advisory_xact_lock(func.hashtext(PURGE_LOCK)))
                ).scalar_one()
            ):
                return 0
            unfinished = select(R.message_id).where(R.state == QUEUED)
            candidates = [
                row.id
                for row in conn.execute(
                    select(M.id)
                    .where(
                        M.received_at < before,
                        M.id.not_in(unfinished),
                    )
                    .limit(limit)
                )
            ]
            if not candidates:
                return 0
            conn.execute(delete(attempts).where(attempts.c.message_id.in_(candidates)))
            conn.execute(delete(recipients).where(R.message_id.in_(candidates)))
            conn.execute(delete(messages).where(M.id.in_(candidates)))
            return len(candidates)
