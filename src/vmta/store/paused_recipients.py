"""Releasing mail held by a MailerQ pause as soon as the pause is gone.

A paused recipient waits in the spool until its next look (the router's recheck, a
minute), with ``waiting_reason`` saying which pause holds it. The contract promises that
mail goes on within seconds of a pause's removal, on every node: each node watches a
cheap fingerprint of the pauses table (``pauses_fingerprint``) and, when a pause it saw
is gone, makes the recipients a pause holds due now (``release_paused``). Those still
held by another pause are held again at their next look; the update is idempotent, so
several nodes doing it at once cost only a repeated write.
"""

from __future__ import annotations

from sqlalchemy import and_, select, update

from vmta.domain.attempts.spool_records import QUEUED
from vmta.store.store import Store
from vmta.store.tables import mq_pauses, recipients

R = recipients.c
P = mq_pauses.c


def pauses_fingerprint(store: Store) -> frozenset[tuple[str, float | None]]:
    """Every pause as (matcher key, expiry): the table is small (an operator's list)."""
    with store.read() as conn:
        return frozenset(
            (row.matcher_key, row.expire) for row in conn.execute(select(P.matcher_key, P.expire))
        )


def release_paused(store: Store, now: float, reason_prefix: str) -> int:
    """Make every queued, unclaimed recipient whose ``waiting_reason`` starts with
    ``reason_prefix`` due at ``now``; returns how many."""
    with store.write() as conn:
        result = conn.execute(
            update(recipients)
            .where(
                and_(
                    R.state == QUEUED,
                    R.lease_owner.is_(None),
                    R.next_attempt_at > now,
                    R.waiting_reason.startswith(reason_prefix, autoescape=True),
                )
            )
            .values(next_attempt_at=now, updated_at=now)
        )
        return int(result.rowcount)
