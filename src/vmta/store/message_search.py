"""Finding messages for people: for ``GET /api/messages`` and ``vmta queue list`` by
recipient address, envelope sender, Message-ID or recipient state, oldest first
(``search_messages``); for the console's one search box by queue id, recipient (or
``@domain``) or Message-ID, newest first (``find_messages``).

The spool keeps no column for the Message-ID field (RFC 5322 §3.6.4): it is looked up in
the stored message itself, an operator's search and not a hot path. ``search_messages``
checks each candidate's header section, so that the same text in a body does not count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, LargeBinary, bindparam, case, func, or_, select

from vmta.domain.attempts.spool_records import QUEUED
from vmta.domain.message.message_id_field import message_id_of
from vmta.store.store import Store
from vmta.store.tables import events, messages, recipients

R = recipients.c
M = messages.c
E = events.c
SCAN_BATCH = 200
LIMIT = 50  # the console's answers


@dataclass(frozen=True)
class MessageSearch:
    state: str | None = None
    recipient: str | None = None  # an address, case-insensitive
    sender: str | None = None  # the envelope sender, case-insensitive; "" is <>
    message_id: str | None = None  # the Message-ID field, with or without <>


def search_messages(store: Store, search: MessageSearch, limit: int) -> list[dict[str, Any]]:
    where: list[ColumnElement[bool]] = []
    if search.state is not None:
        where.append(M.id.in_(select(R.message_id).where(R.state == search.state)))
    if search.recipient is not None:
        address = search.recipient.lower()
        where.append(M.id.in_(select(R.message_id).where(func.lower(R.address) == address)))
    if search.sender is not None:
        where.append(func.lower(M.mail_from) == search.sender.lower())
    wanted = None
    if search.message_id is not None:
        wanted = search.message_id.strip().strip("<>")
        where.append(_body_contains(store, wanted.encode("utf-8", "replace")))
    summary = (
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
        .where(*where)
        .group_by(M.id, M.received_at, M.mail_from, M.size, M.vmta_selector)
        .order_by(M.received_at, M.id)
    )
    found: list[dict[str, Any]] = []
    with store.read() as conn:
        if wanted is None:
            return [dict(row._mapping) for row in conn.execute(summary.limit(limit))]
        offset = 0
        while len(found) < limit:
            rows = conn.execute(summary.limit(SCAN_BATCH).offset(offset)).all()
            if not rows:
                break
            offset += len(rows)
            bodies = dict(
                conn.execute(select(M.id, M.body).where(M.id.in_([r.id for r in rows]))).all()
            )
            for row in rows:
                header = message_id_of(bytes(bodies.get(row.id, b"")))
                if header is not None and header.strip("<>") == wanted:
                    found.append(dict(row._mapping))
    return found[:limit]


def _body_contains(store: Store, needle: bytes) -> ColumnElement[bool]:
    """The stored message contains ``needle`` (a coarse filter, checked afterwards)."""
    if store.dialect == "postgresql":
        # bytea has LIKE but no instr(); backslash is LIKE's default escape there.
        escaped = needle.replace(b"\\", b"\\\\").replace(b"%", b"\\%").replace(b"_", b"\\_")
        pattern = bindparam("needle", b"%" + escaped + b"%", type_=LargeBinary)
        return M.body.op("LIKE")(pattern)
    return func.instr(M.body, bindparam("needle", needle, type_=LargeBinary)) > 0


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
    by_msgid = _body_contains(store, ("<" + query.strip("<>") + ">").encode())
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
