"""Finding messages for an operator: by queue id, by recipient address (or ``@domain``),
or by the Message-ID header field (RFC 5322 §3.6.4), for the console's search.

A queue id is the key; an address is compared ignoring case. A Message-ID is not stored
apart from the message, so that search reads the stored messages themselves: fine for an
operator's question now and then, not for a script to poll.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import ColumnElement, case, func, or_, select, text

from vmta.domain.spool_records import QUEUED
from vmta.store.store import Store
from vmta.store.tables import events, messages, recipients

R = recipients.c
M = messages.c
E = events.c
LIMIT = 50


def find_messages(store: Store, query: str, limit: int = LIMIT) -> list[dict[str, Any]]:
    """Messages whose queue id is ``query``, with a recipient ``query`` (``@domain``: any
    recipient of that domain) or whose Message-ID is ``query`` (angle brackets optional),
    newest first."""
    query = query.strip()
    if not query:
        return []
    needle = query.lower()
    if needle.startswith("@"):
        by_recipient = func.lower(R.address).endswith(needle, autoescape=True)
    else:
        by_recipient = func.lower(R.address) == needle
    msgid = ("<" + query.strip("<>") + ">").encode()
    by_msgid: ColumnElement[bool]
    if store.dialect == "postgresql":
        # position(bytea IN bytea): SQLAlchemy has no spelling of it.
        found_in_body = text("position(:msgid in messages.body) > 0").bindparams(msgid=msgid)
        by_msgid = cast(ColumnElement[bool], found_in_body)
    else:
        by_msgid = func.instr(M.body, msgid) > 0
    with_recipient = select(R.message_id).where(by_recipient).scalar_subquery()
    found = (
        select(M.id, M.received_at, M.mail_from, M.size, M.vmta_selector)
        .where(or_(M.id == query[:32], M.id.in_(with_recipient), by_msgid))
        .order_by(M.received_at.desc(), M.id)
        .limit(limit)
    )
    with store.read() as conn:
        rows = [dict(row._mapping) for row in conn.execute(found)]
        ids = [row["id"] for row in rows]
        counts = {
            r.message_id: (int(r.n), int(r.queued or 0))
            for r in conn.execute(
                select(
                    R.message_id,
                    func.count().label("n"),
                    func.sum(case((R.state == QUEUED, 1), else_=0)).label("queued"),
                )
                .where(R.message_id.in_(ids))
                .group_by(R.message_id)
            )
        }
    for row in rows:
        row["recipients"], row["queued"] = counts.get(row["id"], (0, 0))
    return rows


def pending_events(store: Store, message_id: str) -> list[dict[str, Any]]:
    """The events of a message still in the outbox (sent ones are gone from it)."""
    with store.read() as conn:
        rows = conn.execute(
            select(E.id, E.created_at, E.event_type, E.payload)
            .where(E.message_id == message_id)
            .order_by(E.id)
        )
        return [dict(row._mapping) for row in rows]
