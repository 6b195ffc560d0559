"""What the inbound listener accepted (``inbound_messages``), what the feedback processor
made of it (``feedback_reports``, events in the outbox), and the VERP secret
(``installation_secrets``).

An accepted message is one INSERT committed before the listener's 250. The processor
claims messages under a lease (as recipients are claimed for delivery: a crashed node's
claims run out) and finishes each in one transaction that writes its report and events
and deletes the message, so a report is made at least once and its events exactly when
it is.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from vmta.domain.paths.suppression import Suppression, SuppressionType
from vmta.domain.reports.bad_address import SUPPRESSION_CODE, BadAddressPolicy
from vmta.domain.reports.delivery_event import Event, EventSubscription, subscribers
from vmta.store.bad_addresses import count_bounce
from vmta.store.store import Store
from vmta.store.suppressions import SuppressionRepository
from vmta.store.tables import (
    event_deliveries,
    events,
    feedback_reports,
    inbound_messages,
    installation_secrets,
    messages,
    recipients,
)

IN = inbound_messages.c
F = feedback_reports.c
VERP_SECRET = "verp_hmac_key"  # noqa: S105  (a row name, not a secret)
REPORT_RETENTION = 30 * 86_400.0  # unmatched reports are kept 30 days


def header_message_id(body: bytes) -> str | None:
    """The Message-ID of a stored message, without angle brackets."""
    head = body.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    value = BytesHeaderParser().parsebytes(head).get("Message-ID")
    return None if value is None else str(value).strip().strip("<>") or None


@dataclass(frozen=True)
class InboundMessage:
    id: int
    received_at: float
    mail_from: str
    recipients: list[str]
    body: bytes


@dataclass(frozen=True)
class SentRecipient:
    """A recipient vmta sent to, as a report is matched to it."""

    queue_id: str
    recipient_id: int
    address: str
    mail_from: str
    kept_headers: dict[str, str] | None


@dataclass(frozen=True)
class CountedBounce:
    """A matched received bounce, for the bad-address threshold (store/bad_addresses)."""

    recipient: str
    listid: str | None
    bounce_type: str
    at: float
    fields: dict[str, Any]  # the fields every event has, for bounce_bad_address


@dataclass(frozen=True)
class StoredReport:
    received_at: float
    kind: str
    matched: bool
    mailbox: str
    queue_id: str | None
    recipient: str | None
    report: dict[str, Any]


def verp_secret(store: Store) -> bytes:
    """This installation's VERP key: 32 random bytes made once and shared by every node
    through the database (a data directory is one node's; the key must be everyone's)."""
    with store.read() as conn:
        found = conn.execute(
            select(installation_secrets.c.value).where(installation_secrets.c.name == VERP_SECRET)
        ).scalar()
    if found is not None:
        return bytes(found)
    try:
        with store.write() as conn:
            conn.execute(
                insert(installation_secrets).values(name=VERP_SECRET, value=secrets.token_bytes(32))
            )
    except IntegrityError:
        pass  # another node made it first: read theirs
    with store.read() as conn:
        return bytes(
            conn.execute(
                select(installation_secrets.c.value).where(
                    installation_secrets.c.name == VERP_SECRET
                )
            ).scalar_one()
        )


def accept_inbound(
    store: Store,
    *,
    received_at: float,
    mail_from: str,
    rcpts: Sequence[str],
    client_ip: str | None,
    body: bytes,
) -> int:
    with store.write() as conn:
        result = conn.execute(
            insert(inbound_messages).values(
                received_at=received_at,
                mail_from=mail_from,
                recipients=list(rcpts),
                client_ip=client_ip,
                body=body,
            )
        )
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def claim_inbound(
    store: Store,
    owner: str,
    now: float,
    lease: float,
    limit: int,
    predecessors: Sequence[str] = (),
) -> list[int]:
    """Ids of up to ``limit`` messages no live claim holds, now claimed by ``owner``.
    Claims of ``predecessors`` (earlier processes known to be gone, vmta.store.nodes)
    are void at once, as their recipient leases are."""
    mine = (owner, *predecessors)
    free = or_(IN.lease_owner.is_(None), IN.lease_until < now, IN.lease_owner.in_(mine))
    with store.write() as conn:
        ids = [
            row.id for row in conn.execute(select(IN.id).where(free).order_by(IN.id).limit(limit))
        ]
        if not ids:
            return []
        conn.execute(
            update(inbound_messages)
            .where(IN.id.in_(ids), free)
            .values(lease_owner=owner, lease_until=now + lease)
        )
        return [
            row.id
            for row in conn.execute(select(IN.id).where(IN.id.in_(ids), IN.lease_owner == owner))
        ]


def load_inbound(store: Store, message_id: int) -> InboundMessage | None:
    with store.read() as conn:
        row = conn.execute(select(inbound_messages).where(IN.id == message_id)).first()
    if row is None:
        return None
    return InboundMessage(
        id=row.id,
        received_at=row.received_at,
        mail_from=row.mail_from,
        recipients=list(row.recipients),
        body=bytes(row.body),
    )


def sent_recipient(
    store: Store, queue_id: str, *, recipient_id: int | None = None, address: str | None = None
) -> SentRecipient | None:
    """The recipient of message ``queue_id`` with that row id, or that address (ignoring
    case); None once the message is gone (deleted, or purged after its retention)."""
    R, M = recipients.c, messages.c
    query = (
        select(R.id, R.message_id, R.address, M.mail_from, M.kept_headers)
        .join(messages, M.id == R.message_id)
        .where(R.message_id == queue_id)
    )
    if recipient_id is not None:
        query = query.where(R.id == recipient_id)
    elif address is not None:
        query = query.where(func.lower(R.address) == address.lower())
    else:
        return None
    with store.read() as conn:
        row = conn.execute(query.limit(1)).first()
    if row is None:
        return None
    return SentRecipient(row.message_id, row.id, row.address, row.mail_from, row.kept_headers)


def sent_by_message_id(
    store: Store, address: str, message_id: str, *, scan: int = 50
) -> SentRecipient | None:
    """The recipient ``address`` of the message whose Message-ID header is
    ``message_id``, among that address's ``scan`` newest messages still in the spool
    (vmta keeps no index of Message-IDs: a fallback for reports that carry no token)."""
    R, M = recipients.c, messages.c
    query = (
        select(R.id, R.message_id, R.address, M.mail_from, M.kept_headers, M.body)
        .join(messages, M.id == R.message_id)
        .where(func.lower(R.address) == address.lower())
        .order_by(M.received_at.desc())
        .limit(scan)
    )
    wanted = message_id.strip().strip("<>")
    with store.read() as conn:
        for row in conn.execute(query):
            if header_message_id(bytes(row.body)) == wanted:
                return SentRecipient(
                    row.message_id, row.id, row.address, row.mail_from, row.kept_headers
                )
    return None


@dataclass(frozen=True)
class Findings:
    """What one inbound message gave: report rows, events, bounces that count towards
    the bad-address threshold, and complained-about recipients."""

    reports: Sequence[StoredReport] = ()
    events: Sequence[Event] = ()
    bounces: Sequence[CountedBounce] = ()
    complained: Sequence[str] = ()


def finish_inbound(
    store: Store,
    message_id: int,
    owner: str,
    findings: Findings,
    subscriptions: Sequence[EventSubscription],
    policy: BadAddressPolicy | None = None,
) -> bool:
    """In one transaction: delete the message if ``owner`` still holds it, and then store
    its reports and events, count its bounces towards the bad-address threshold
    (``bounce_bad_address`` and a suppression when one is crossed), and with
    ``policy.suppress`` suppress the recipients complained about. False: another node
    took it; nothing written."""
    with store.write() as conn:
        if not _finish(conn, message_id, owner, findings.reports, findings.events, subscriptions):
            return False
        if policy is None:
            return True
        for bounce in findings.bounces:
            count_bounce(
                conn,
                recipient=bounce.recipient,
                listid=bounce.listid,
                bounce_type=bounce.bounce_type,
                at=bounce.at,
                policy=policy,
                subscriptions=subscriptions,
                event_fields=bounce.fields,
            )
        if policy.suppress:
            for recipient in findings.complained:
                _suppress_complainer(conn, recipient)
        return True


def _suppress_complainer(conn: Connection, recipient: str) -> None:
    """A recipient who complained joins the suppression list (an entry already there,
    an operator's own among them, is kept as it is)."""
    SuppressionRepository(conn).add_unless_listed(
        Suppression(
            value=recipient.strip(),
            type=SuppressionType.ADDRESS,
            code=SUPPRESSION_CODE,
            extended="5.7.1",  # RFC 3463: delivery not authorized (the recipient refused it)
            description="spam complaint",
        )
    )


def _finish(
    conn: Connection,
    message_id: int,
    owner: str,
    reports: Sequence[StoredReport],
    built: Sequence[Event],
    subscriptions: Sequence[EventSubscription],
) -> bool:
    gone = conn.execute(
        delete(inbound_messages).where(IN.id == message_id, IN.lease_owner == owner)
    ).rowcount
    if gone != 1:
        return False
    if reports:
        conn.execute(
            insert(feedback_reports),
            [
                {
                    "received_at": r.received_at,
                    "kind": r.kind,
                    "matched": r.matched,
                    "mailbox": r.mailbox,
                    "queue_id": r.queue_id,
                    "recipient": r.recipient,
                    "report": r.report,
                }
                for r in reports
            ],
        )
    write_events(conn, built, subscriptions)
    return True


def write_events(
    conn: Connection, built: Sequence[Event], subscriptions: Sequence[EventSubscription]
) -> int:
    """Events into the outbox, one delivery row per destination subscribed to the type
    (as store/event_outbox does for delivery outcomes)."""
    wanted = [(e, subscribers(e, subscriptions)) for e in built]
    wanted = [(e, names) for e, names in wanted if names]
    if not wanted:
        return 0
    for event, names in wanted:
        result = conn.execute(
            insert(events).values(
                created_at=event.at,
                event_type=event.event_type,
                message_id=event.message_id,
                payload=event.payload,
            )
        )
        key = result.inserted_primary_key
        assert key is not None
        conn.execute(
            insert(event_deliveries), [{"event_id": key[0], "destination": n} for n in names]
        )
    return len(wanted)


def report_page(
    store: Store, *, matched: bool | None, after_id: int | None, limit: int
) -> list[dict[str, Any]]:
    query = select(feedback_reports).order_by(F.id.desc()).limit(limit)
    if matched is not None:
        query = query.where(F.matched.is_(matched))
    if after_id is not None:
        query = query.where(F.id < after_id)
    with store.read() as conn:
        return [
            {
                "id": row.id,
                "received_at": row.received_at,
                "kind": row.kind,
                "matched": bool(row.matched),
                "mailbox": row.mailbox,
                "queue_id": row.queue_id,
                "recipient": row.recipient,
                "report": row.report,
            }
            for row in conn.execute(query)
        ]


def purge_reports(store: Store, now: float) -> int:
    """Reports older than 30 days go (matched ones have given their events already)."""
    with store.write() as conn:
        return int(
            conn.execute(
                delete(feedback_reports).where(and_(F.received_at < now - REPORT_RETENTION))
            ).rowcount
        )
