"""Bulk actions on the spool: retry, delete, hold and release every recipient a
``QueueSelection`` names (domain/attempts/queue_selection.py), each in one transaction.

Safe against a delivery in flight: a recipient claimed by a node (a lease: it is being
sent, or waits in that node's memory to be sent soon) is never changed; it is counted as
``in_flight`` so the answer says what was left alone. The lease condition is part of each
statement's own WHERE clause, so on PostgreSQL a claim that commits first makes the row
fail the re-check (READ COMMITTED re-evaluates the WHERE of an UPDATE or DELETE on a
row changed meanwhile), and a claim that comes after sees the row changed, deleted or
held; on SQLite the write lock orders the two. So a recipient is either deleted or
delivered, never both; and a held one is not sent until released.

A held recipient stays ``queued`` with ``waiting_reason`` saying so and its next attempt
at ``HOLD_UNTIL``, which no poll reaches; release makes it due at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, not_, or_, select, update

from vmta.domain.attempts.queue_selection import HELD_REASON, QueueSelection
from vmta.domain.attempts.spool_records import QUEUED
from vmta.store.store import Store
from vmta.store.tables import attempts, messages, recipients

R = recipients.c
M = messages.c

HOLD_UNTIL = 253_402_300_799.0  # 9999-12-31T23:59:59Z: "not until released"
CHUNK = 500  # ids per IN (...): well under every driver's limit on bound parameters


@dataclass(frozen=True)
class BulkResult:
    action: str
    changed: int  # recipients retried, deleted, held or released
    in_flight: int  # recipients the selection names that a node has claimed: left alone
    messages_deleted: int = 0  # messages left without recipients by a delete, removed

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "changed": self.changed,
            "in_flight": self.in_flight,
            "messages_deleted": self.messages_deleted,
        }


def _held() -> ColumnElement[bool]:
    return and_(R.state == QUEUED, R.waiting_reason == HELD_REASON)


def _not_held() -> ColumnElement[bool]:
    return and_(R.state == QUEUED, or_(R.waiting_reason.is_(None), R.waiting_reason != HELD_REASON))


def _like_suffix(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%@{escaped}"


def conditions(selection: QueueSelection, action: str, now: float) -> list[ColumnElement[bool]]:
    """The WHERE clause on ``recipients`` for ``selection`` and what ``action`` applies to
    (without the lease condition)."""
    where: list[ColumnElement[bool]] = []
    if selection.domain is not None:
        where.append(func.lower(R.address).like(_like_suffix(selection.domain), escape="\\"))
    if selection.state == "queued":
        where.append(R.state == QUEUED)
    elif selection.state == "deferred":
        where.append(and_(_not_held(), R.attempts > 0))
    elif selection.state == "held":
        where.append(_held())
    elif selection.state is not None:
        where.append(R.state == selection.state)
    if action in ("retry", "hold"):
        where.append(_not_held())
    elif action == "release":
        where.append(_held())
    by_message: list[ColumnElement[bool]] = []
    if selection.sender is not None:
        by_message.append(func.lower(M.mail_from) == selection.sender.lower())
    if selection.older_than is not None:
        by_message.append(M.received_at < now - selection.older_than)
    if selection.virtual_mta is not None:
        # The VirtualMTA of the last attempt, else the one asked for (as /api/queue counts).
        asked = select(M.id).where(M.vmta_selector == selection.virtual_mta)
        where.append(
            or_(
                R.virtual_mta == selection.virtual_mta,
                and_(R.virtual_mta.is_(None), R.message_id.in_(asked)),
            )
        )
    if by_message:
        where.append(R.message_id.in_(select(M.id).where(*by_message)))
    return where


class QueueBulk:
    def __init__(self, store: Store) -> None:
        self.store = store

    def apply(self, action: str, selection: QueueSelection, now: float) -> BulkResult:
        where = conditions(selection, action, now)
        free = R.lease_owner.is_(None)
        with self.store.write() as conn:
            in_flight = conn.execute(
                select(func.count()).select_from(recipients).where(*where, not_(free))
            ).scalar_one()
            if action == "delete":
                gone = conn.execute(
                    delete(recipients).where(*where, free).returning(R.id, R.message_id)
                ).all()
                ids = [row.id for row in gone]
                for start in range(0, len(gone), CHUNK):
                    rows = gone[start : start + CHUNK]
                    conn.execute(
                        delete(attempts).where(
                            attempts.c.message_id.in_({row.message_id for row in rows}),
                            attempts.c.recipient_id.in_([row.id for row in rows]),
                        )
                    )
                # Messages left without a recipient go too (body and all).
                touched = sorted({row.message_id for row in gone})
                removed = 0
                for start in range(0, len(touched), CHUNK):
                    chunk = touched[start : start + CHUNK]
                    still = select(R.message_id).where(R.message_id.in_(chunk))
                    result = conn.execute(
                        delete(messages).where(M.id.in_(chunk), M.id.not_in(still))
                    )
                    removed += result.rowcount
                return BulkResult(action, len(ids), int(in_flight), int(removed))
            values: dict[str, Any] = {"updated_at": now}
            if action == "retry":
                values["next_attempt_at"] = now
            elif action == "hold":
                values.update(next_attempt_at=HOLD_UNTIL, waiting_reason=HELD_REASON)
            elif action == "release":
                values.update(next_attempt_at=now, waiting_reason=None)
            else:
                raise ValueError(f"unknown bulk action {action!r}")
            result = conn.execute(update(recipients).where(*where, free).values(**values))
            return BulkResult(action, int(result.rowcount), int(in_flight))
