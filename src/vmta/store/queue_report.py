"""What an operator asks first after a deferral: which recipients are waiting for another
attempt, how many attempts they had, when the next one is due and what the last said.

The engine keeps only the work it is about to send in memory (``engine.paths`` of
``GET /api/queue``); a deferred recipient is back in the spool until its next attempt, so
this report reads the spool.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from vmta.domain.attempts.spool_records import QUEUED
from vmta.store.store import Store
from vmta.store.tables import messages, recipients

R = recipients.c
M = messages.c
DEFERRED_SHOWN = 20  # the most recently attempted; GET /api/messages/{id} has the rest


def deferred_recipients(store: Store, limit: int = DEFERRED_SHOWN) -> list[dict[str, Any]]:
    """Queued recipients that were tried at least once, most recently attempted first."""
    query = (
        select(
            R.message_id.label("queue_id"),
            R.address.label("recipient"),
            R.virtual_mta,
            M.vmta_selector,
            R.attempts,
            R.last_attempt_at,
            R.next_attempt_at,
            R.last_reply,
        )
        .join(messages, M.id == R.message_id)
        .where(R.state == QUEUED, R.attempts > 0)
        .order_by(R.last_attempt_at.desc(), R.id.desc())
        .limit(limit)
    )
    with store.read() as conn:
        rows = [dict(row._mapping) for row in conn.execute(query)]
    for row in rows:
        # The VirtualMTA of the last attempt, else the one the message asked for.
        selector = row.pop("vmta_selector")
        row["virtual_mta"] = row["virtual_mta"] or selector
    return rows
