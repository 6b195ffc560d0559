"""Reading the spool for people: counts by state and VirtualMTA, one message with its
recipients and attempts, the list of messages (``GET /api/queue``, ``/api/messages``,
``vmta queue``). ``SqlSpool`` has these as methods; they only read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import case, func, literal_column, select

from vmta.domain.attempts.spool_records import QUEUED
from vmta.store.store import Store
from vmta.store.tables import attempts, messages, recipients

R = recipients.c
M = messages.c


@dataclass
class MessageView:
    id: str
    received_at: float
    expires_at: float
    mail_from: str
    size: int
    vmta_selector: str | None
    client_ip: str | None
    auth_name: str | None
    is_bounce: bool
    recipients: list[dict[str, Any]] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)


class SpoolInspector:
    """The spool's reads for people (the queue API, the console, ``vmta queue``)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def counts(self) -> list[dict[str, Any]]:
        """Recipients by state and by the VirtualMTA of their last attempt (or request)."""
        with self.store.read() as conn:
            vmta = func.coalesce(R.virtual_mta, M.vmta_selector)
            # literal_column keeps the expressions identical in SELECT and GROUP BY
            # (PostgreSQL refuses two differently bound "> 0").
            tried = R.attempts > literal_column("0")
            waiting = R.waiting_reason.is_not(None)
            rows = conn.execute(
                select(
                    R.state,
                    vmta.label("virtual_mta"),
                    tried.label("tried"),
                    waiting.label("waiting"),
                    func.count().label("n"),
                )
                .join(messages, M.id == R.message_id)
                .group_by(R.state, vmta, tried, waiting)
            )
            return [dict(row._mapping) for row in rows]

    def message(self, message_id: str) -> MessageView | None:
        with self.store.read() as conn:
            row = conn.execute(select(messages).where(M.id == message_id)).first()
            if row is None:
                return None
            view = MessageView(
                id=row.id,
                received_at=row.received_at,
                expires_at=row.expires_at,
                mail_from=row.mail_from,
                size=row.size,
                vmta_selector=row.vmta_selector,
                client_ip=row.client_ip,
                auth_name=row.auth_name,
                is_bounce=bool(row.is_bounce),
            )
            for r in conn.execute(
                select(recipients).where(R.message_id == message_id).order_by(R.id)
            ):
                view.recipients.append(
                    {
                        "id": r.id,
                        "address": r.address,
                        "state": r.state,
                        "attempts": r.attempts,
                        "next_attempt_at": r.next_attempt_at if r.state == QUEUED else None,
                        "last_attempt_at": r.last_attempt_at,
                        "last_reply": r.last_reply,
                        "waiting_reason": r.waiting_reason,
                        "virtual_mta": r.virtual_mta,
                        "in_flight": r.lease_owner is not None,
                    }
                )
            for a in conn.execute(
                select(attempts).where(attempts.c.message_id == message_id).order_by(attempts.c.id)
            ):
                view.attempts.append(
                    {
                        "at": a.at,
                        "recipient_id": a.recipient_id,
                        "outcome": a.outcome,
                        "virtual_mta": a.virtual_mta,
                        "effective_virtual_mta": a.effective_virtual_mta,
                        "source_ip": a.source_ip,
                        "remote_host": a.remote_host,
                        "remote_ip": a.remote_ip,
                        "reply": a.reply,
                    }
                )
            return view

    def list_messages(self, state: str | None, limit: int) -> list[dict[str, Any]]:
        with self.store.read() as conn:
            query = (
                select(
                    M.id,
                    M.received_at,
                    M.mail_from,
                    M.size,
                    M.vmta_selector,
                    func.count().label("recipients"),
                    func.sum(case((R.state == QUEUED, 1), else_=0)).label("queued"),
                )
                .join(recipients, R.message_id == M.id)
                .group_by(M.id, M.received_at, M.mail_from, M.size, M.vmta_selector)
                .order_by(M.received_at, M.id)
                .limit(limit)
            )
            if state is not None:
                query = query.where(
                    M.id.in_(select(R.message_id).where(R.state == state).scalar_subquery())
                )
            return [dict(row._mapping) for row in conn.execute(query)]
