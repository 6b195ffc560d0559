"""The bad-address threshold, applied inside the transaction that records a bounce
(tables ``address_bounces`` and ``bad_addresses``; the rule is vmta.domain.reports.bad_address).

``count_bounce`` is the one entry point, for a refusal seen in vmta's own session (the
spool's recording transaction) and for a bounce received later alike: it counts the
bounce, and when the recipient crosses a threshold for the first time it writes the
``bounce_bad_address`` event and, with the policy's ``suppress``, the suppression, in the
same transaction. So a crash leaves either all of it or none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, select

from vmta.domain.attempts.spool_records import FAILED, Outcome
from vmta.domain.paths.suppression import Suppression, SuppressionType
from vmta.domain.reports.bad_address import (
    SUPPRESSION_CODE,
    SUPPRESSION_STATUS,
    BadAddressPolicy,
    address_key,
    list_key,
)
from vmta.domain.reports.bounce_classification import HARD, SOFT
from vmta.domain.reports.delivery_event import (
    BOUNCE_BAD_ADDRESS,
    Event,
    EventSubscription,
    bounce_classification,
    common_fields,
    is_expiry,
    subscribers,
)
from vmta.store.event_outbox import insert_events
from vmta.store.suppressions import SuppressionRepository
from vmta.store.tables import address_bounces, bad_addresses, messages, recipients

B = address_bounces.c
BAD = bad_addresses.c
R = recipients.c
M = messages.c


def count_bounce(
    conn: Connection,
    *,
    recipient: str,
    listid: str | None,
    bounce_type: str,
    at: float,
    policy: BadAddressPolicy,
    subscriptions: Sequence[EventSubscription] = (),
    event_fields: Mapping[str, Any] | None = None,
) -> bool:
    """Count one bounce of ``recipient`` on list ``listid`` at ``at``. Returns True when
    this bounce made the address bad (the first time only): ``bounce_bad_address`` was
    then written for ``subscriptions``, with ``event_fields`` (the fields every event
    has: email, message_id, listid, ... of the bounce it follows), and the address
    suppressed when ``policy.suppress``. Must run inside the caller's transaction."""
    if not policy.counts(bounce_type):
        return False
    address, listed = address_key(recipient), list_key(listid)
    if not address:
        return False
    mine = and_(B.address_key == address, B.list_key == listed)
    window_start = policy.window_start(at)
    # Soft bounces out of the window never count again.
    conn.execute(delete(address_bounces).where(mine, B.bounce_type == SOFT, B.at < window_start))
    already = conn.execute(
        select(BAD.at).where(BAD.address_key == address, BAD.list_key == listed)
    ).first()
    conn.execute(
        insert(address_bounces).values(
            address_key=address, list_key=listed, bounce_type=bounce_type, at=at
        )
    )
    if already is not None:
        return False
    counts: dict[str, int] = {
        bounce_type: count
        for bounce_type, count in conn.execute(
            select(B.bounce_type, func.count())
            .where(mine, (B.bounce_type == HARD) | (B.at >= window_start))
            .group_by(B.bounce_type)
        )
    }
    hard, soft = int(counts.get(HARD, 0)), int(counts.get(SOFT, 0))
    if not policy.crossed(hard, soft):
        return False
    reason = policy.reason(hard, soft)
    conn.execute(
        insert(bad_addresses).values(address_key=address, list_key=listed, at=at, reason=reason)
    )
    if policy.suppress:
        _suppress(conn, recipient, reason)
    fields = dict(event_fields or {})
    fields.setdefault("email", recipient)
    fields.setdefault("listid", listed or None)
    payload = {"event_type": BOUNCE_BAD_ADDRESS, **fields, "event_time": int(at)}
    event = Event(
        BOUNCE_BAD_ADDRESS, at, str(fields.get("message_id") or ""), {"greenarrow": payload}
    )
    names = subscribers(event, subscriptions)
    if names:
        insert_events(conn, [(event, names)])
    return True


def count_final_failures(
    conn: Connection,
    outcomes: Sequence[Outcome],
    owner: str,
    policy: BadAddressPolicy,
    subscriptions: Sequence[EventSubscription],
) -> int:
    """Count the synchronous bounces among ``outcomes`` (final failures of messages
    that are not themselves bounces, as ``bounce_all`` is written for), in the spool's
    recording transaction and before the recipients are updated (their lease is read as
    ``write_outcome_events`` reads it). Not counted: a suppressed recipient (it was
    never tried) and vmta's own decisions other than expiry (a forced error is an
    operator's, not the address's). Returns how many addresses became bad."""
    failed = [o for o in outcomes if o.state == FAILED and _counts(o)]
    if not failed:
        return 0
    ids = sorted({o.recipient_id for o in failed})
    rows = {
        row.id: row
        for row in conn.execute(
            select(R.id, R.address, M.is_bounce, M.kept_headers)
            .join(messages, M.id == R.message_id)
            .where(R.id.in_(ids), R.lease_owner == owner)
        )
    }
    crossed = 0
    for outcome in failed:
        row = rows.get(outcome.recipient_id)
        if row is None or row.is_bounce:
            continue
        bounce_type, _code = bounce_classification(outcome)
        fields = common_fields(
            at=outcome.at,
            address=row.address,
            message_id=outcome.message_id,
            kept_headers=row.kept_headers,
        )
        if count_bounce(
            conn,
            recipient=row.address,
            listid=fields.get("listid"),
            bounce_type=bounce_type,
            at=outcome.at,
            policy=policy,
            subscriptions=subscriptions,
            event_fields=fields,
        ):
            crossed += 1
    return crossed


def _counts(outcome: Outcome) -> bool:
    if outcome.stage == "suppression":
        return False
    return outcome.stage != "process" or is_expiry(outcome)


def _suppress(conn: Connection, recipient: str, reason: str) -> None:
    """Add the address to the suppression list, unless it is there already: an entry an
    operator made (with its own code and text) is kept as it is."""
    SuppressionRepository(conn).add_unless_listed(
        Suppression(
            value=recipient.strip(),
            type=SuppressionType.ADDRESS,
            code=SUPPRESSION_CODE,
            extended=SUPPRESSION_STATUS,
            description=reason,
        )
    )


def is_bad(conn: Connection, recipient: str, listid: str | None) -> bool:
    """Whether ``recipient`` was found bad on list ``listid``."""
    found = conn.execute(
        select(BAD.at).where(
            BAD.address_key == address_key(recipient), BAD.list_key == list_key(listid)
        )
    ).first()
    return found is not None
