"""The queued mail grouped by VirtualMTA and recipient domain: the rows behind
``GET /ga/api/v3/eng/disk_queue_summary`` and the console's Queue page.

GreenArrow's Disk Queue Summary groups by the VirtualMTA a message was injected with
(``virtualmta_injected``) or the one its last attempt used (``virtualmta_most_recent``).
vmta keeps both: ``messages.vmta_selector`` is what the sender asked for, and
``recipients.virtual_mta`` the VirtualMTA chosen at the last attempt.

The grouping runs in the database (one row per group and message, then one per group), so
the cost is one scan of the queued recipients whatever the size of the answer; only the
rows of the answer reach Python. Counts are of ``queued`` recipients, the same set that
``GET /api/queue``, ``vmta queue`` and ``vmta_queue_recipients`` on ``/metrics`` count.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, func, literal_column, select

from vmta.domain.attempts.spool_records import QUEUED
from vmta.store.store import Store
from vmta.store.tables import messages, recipients

R = recipients.c
M = messages.c


class GroupBy(StrEnum):
    INJECTED = "virtualmta_injected"
    MOST_RECENT = "virtualmta_most_recent"


@dataclass(frozen=True)
class QueueGroup:
    """The queued recipients of one VirtualMTA selector (None: none, the default) and one
    recipient domain."""

    selector: str | None
    domain: str
    messages: int
    recipients: int
    bytes: int
    oldest_injected_at: float
    next_attempt_at: float
    last_reply: str | None


def _domain(dialect: str) -> ColumnElement[Any]:
    """The text after the last ``@`` of the address, lower-cased, as the router reads it
    (``domain.routing_choice.recipient_domain``)."""
    if dialect == "postgresql":
        return func.lower(func.regexp_replace(R.address, "^.*@", ""))
    # SQLite has no "last occurrence": rtrim(address, every character but '@') leaves
    # the address up to its last '@', whose length is where the domain starts.
    without_at = func.replace(R.address, "@", "")
    return func.lower(func.substr(R.address, func.length(func.rtrim(R.address, without_at)) + 1))


def queue_groups(store: Store, group_by: GroupBy) -> list[QueueGroup]:
    """Every (selector, domain) group of queued recipients, largest first."""
    selector: ColumnElement[Any] = M.vmta_selector
    if group_by is GroupBy.MOST_RECENT:
        selector = func.coalesce(R.virtual_mta, M.vmta_selector)
    domain = _domain(store.dialect)
    queued = R.state == literal_column(f"'{QUEUED}'")
    # One row per group and message: a message's size counts once per group, however
    # many of its recipients the group holds.
    per_message = (
        select(
            selector.label("selector"),
            domain.label("domain"),
            R.message_id.label("message_id"),
            func.count().label("recipients"),
            func.min(M.size).label("size"),
            func.min(M.received_at).label("received_at"),
            func.min(R.next_attempt_at).label("next_attempt_at"),
        )
        .join(messages, M.id == R.message_id)
        .where(queued)
        .group_by(selector, domain, R.message_id)
        .subquery()
    )
    p = per_message.c
    groups = select(
        p.selector,
        p.domain,
        func.count().label("messages"),
        func.sum(p.recipients).label("recipients"),
        func.sum(p.size).label("bytes"),
        func.min(p.received_at).label("oldest"),
        func.min(p.next_attempt_at).label("next_attempt_at"),
    ).group_by(p.selector, p.domain)
    # The newest reply of each group: the recipient attempted last.
    ranked = (
        select(
            selector.label("selector"),
            domain.label("domain"),
            R.last_reply,
            func.row_number()
            .over(
                partition_by=(selector, domain),
                order_by=(R.last_attempt_at.desc(), R.id.desc()),
            )
            .label("rank"),
        )
        .join(messages, M.id == R.message_id)
        .where(queued, R.last_reply.is_not(None), R.last_attempt_at.is_not(None))
        .subquery()
    )
    newest = select(ranked.c.selector, ranked.c.domain, ranked.c.last_reply).where(
        ranked.c.rank == 1
    )
    with store.read() as conn:
        rows = list(conn.execute(groups))
        replies = {(r.selector, r.domain): r.last_reply for r in conn.execute(newest)}
    found = [
        QueueGroup(
            selector=row.selector,
            domain=row.domain,
            messages=int(row.messages),
            recipients=int(row.recipients),
            bytes=int(row.bytes or 0),
            oldest_injected_at=float(row.oldest),
            next_attempt_at=float(row.next_attempt_at),
            last_reply=replies.get((row.selector, row.domain)),
        )
        for row in rows
    ]
    return sorted(found, key=lambda g: (-g.recipients, -g.messages, g.domain, g.selector or ""))
