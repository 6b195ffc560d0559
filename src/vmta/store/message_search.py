"""Finding messages for people: by recipient address, envelope sender, Message-ID or
recipient state (``GET /api/messages``, ``vmta queue list``), oldest first.

The spool keeps no column for the Message-ID field: it is looked up in the stored
message itself (a scan of the messages that match the other criteria; an operator's
search, not a hot path), and each candidate's header section is checked so that the
same text in a body does not count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, LargeBinary, bindparam, case, func, select

from vmta.domain.message_id_field import message_id_of
from vmta.domain.spool_records import QUEUED
from vmta.store.store import Store
from vmta.store.tables import messages, recipients

R = recipients.c
M = messages.c
SCAN_BATCH = 200


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
