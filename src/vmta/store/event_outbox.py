"""The event outbox (tables ``events``, ``event_deliveries``, ``event_destinations``).

Writing: ``write_outcome_events`` runs inside the spool's transaction that records the
outcomes (``SqlSpool.record``), so an event is committed exactly when its outcome is.

Sending: ``EventOutbox`` is what the event sender uses: claim a batch for a destination
(a lease, as for recipients), delete what the destination acknowledged, note errors. Each
method is one short transaction; the sender calls them from its own thread, never from
the spool writer's.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Connection, and_, case, delete, func, insert, or_, select, update

from vmta.domain.attempts.spool_records import Outcome
from vmta.domain.reports.delivery_event import (
    Event,
    EventSubscription,
    MessageFacts,
    build_events,
    mailerq_json,
    outcome_result,
    subscribers,
    wants_event,
)
from vmta.domain.reports.mailerq_result import result_entry
from vmta.store.db_clock import LeaseClock
from vmta.store.store import Store
from vmta.store.tables import (
    attempts,
    event_deliveries,
    event_destinations,
    events,
    messages,
    recipients,
)

# Events per INSERT on SQLite: 4 parameters each, far below its 32,766 bound parameters
# (and recipient ids per SELECT).
_EVENT_ROWS_PER_STATEMENT = 500

R = recipients.c
M = messages.c
E = events.c
D = event_deliveries.c
S = event_destinations.c
# What an event needs to know of its recipient and message (``MessageFacts``).
_FACTS_COLUMNS = (
    R.id,
    R.message_id,
    R.address,
    R.attempts,
    M.mail_from,
    M.received_at,
    M.is_bounce,
    M.kept_headers,
    M.mq_options,
    M.size,
)


def write_outcome_events(
    conn: Connection,
    outcomes: Sequence[Outcome],
    owner: str,
    subscriptions: Sequence[EventSubscription],
) -> int:
    """Insert the events of ``outcomes`` and one delivery row per subscribed destination.

    Must run in the recording transaction and before the recipients are updated: it reads
    each recipient's attempt count as it was before this outcome. An outcome whose
    recipient this node no longer leases is not applied by ``record`` and gets no event.
    Returns the number of events written."""
    if not subscriptions:
        return 0
    wanted = [o for o in outcomes if wants_event(o)]
    if not wanted:
        return 0
    ids = sorted({o.recipient_id for o in wanted})
    rows: dict[int, Any]
    if conn.dialect.name == "sqlite":
        rows = _facts_rows_sqlite(conn, ids, owner)
    else:
        query = (
            select(*_FACTS_COLUMNS)
            .join(messages, M.id == R.message_id)
            .where(R.id.in_(ids), R.lease_owner == owner)
        )
        if conn.dialect.name == "postgresql":
            # The rows stay ours until commit: the update that follows applies exactly these.
            query = query.with_for_update(of=recipients)
        rows = {row.id: row for row in conn.execute(query)}
    history = _earlier_results(conn, [row for row in rows.values() if row.attempts > 0])
    # An outcome's result joins its recipient's history only for a later outcome of the
    # same recipient in this batch (rare): the others need not build it twice.
    later = Counter(o.recipient_id for o in wanted)
    seen_attempts: dict[int, int] = {}
    built = []
    for outcome in wanted:
        later[outcome.recipient_id] -= 1
        row = rows.get(outcome.recipient_id)
        if row is None:
            continue
        # Several outcomes of one recipient in one batch: each counts the ones before it.
        before = row.attempts + seen_attempts.get(row.id, 0)
        if outcome.attempted:
            seen_attempts[row.id] = seen_attempts.get(row.id, 0) + 1
        facts = MessageFacts(
            address=row.address,
            attempts_before=before,
            mail_from=row.mail_from,
            received_at=row.received_at,
            is_bounce=bool(row.is_bounce),
            kept_headers=row.kept_headers,
            mailerq_json=mailerq_json(row.mq_options),
            earlier_results=list(history.get(row.id, ())),
            size=row.size,
        )
        for event in build_events(outcome, facts):
            names = subscribers(event, subscriptions)
            if names:
                built.append((event, names))
        if outcome.attempted and later[outcome.recipient_id] > 0:
            history.setdefault(row.id, []).append(outcome_result(outcome))
    insert_events(conn, built)
    return len(built)


class _FactsRow(NamedTuple):
    """A row of ``_FACTS_COLUMNS``, as the driver gives it on SQLite."""

    id: int
    message_id: str
    address: str
    attempts: int
    mail_from: str
    received_at: float
    is_bounce: bool
    kept_headers: dict[str, str] | None
    mq_options: dict[str, Any] | None
    size: int | None


def _facts_rows_sqlite(conn: Connection, ids: Sequence[int], owner: str) -> dict[int, Any]:
    """The facts of ``ids`` this node leases, in the driver's statement: SQLAlchemy's
    building and result processing of the same SELECT cost about 13 µs of CPU per
    outcome (docs/PERFORMANCE.md, round 5). The JSON columns are decoded as the
    column's type would (``json.loads``; SQL NULL is None)."""
    found: dict[int, Any] = {}
    for start in range(0, len(ids), _EVENT_ROWS_PER_STATEMENT):
        chunk = ids[start : start + _EVENT_ROWS_PER_STATEMENT]
        statement = (
            "SELECT r.id, r.message_id, r.address, r.attempts, m.mail_from, m.received_at,"
            " m.is_bounce, m.kept_headers, m.mq_options, m.size"
            " FROM recipients AS r JOIN messages AS m ON m.id = r.message_id"
            f" WHERE r.id IN ({', '.join(['?'] * len(chunk))}) AND r.lease_owner = ?"
        )
        for raw in conn.exec_driver_sql(statement, (*chunk, owner)):
            recipient_id, message_id, address, attempts, mail_from, received_at = raw[:6]
            is_bounce, kept, mq, size = raw[6:]
            found[recipient_id] = _FactsRow(
                recipient_id,
                message_id,
                address,
                attempts,
                mail_from,
                received_at,
                bool(is_bounce),
                None if kept is None else json.loads(kept),
                None if mq is None else json.loads(mq),
                size,
            )
    return found


def insert_events(conn: Connection, built: Sequence[tuple[Event, Sequence[str]]]) -> None:
    """Insert events and one delivery row per destination named with each, in order (an
    event's outbox id orders it for every destination)."""
    if not built:
        return
    if conn.dialect.name == "sqlite":
        _insert_events_sqlite(conn, built)
        return
    inserted = conn.execute(
        insert(events).returning(E.id, sort_by_parameter_order=True),
        [
            {
                "created_at": event.at,
                "event_type": event.event_type,
                "message_id": event.message_id,
                "payload": event.payload,
            }
            for event, _ in built
        ],
    )
    event_ids = [row.id for row in inserted]
    conn.execute(
        insert(event_deliveries),
        [
            {"event_id": event_id, "destination": name}
            for event_id, (_, names) in zip(event_ids, built, strict=True)
            for name in names
        ],
    )


def _insert_events_sqlite(conn: Connection, built: Sequence[tuple[Event, Sequence[str]]]) -> None:
    """``insert_events`` on SQLite, in the driver's statements: many rows per INSERT.

    SQLAlchemy's ``returning(sort_by_parameter_order=True)`` has no way to order a
    multi-row INSERT's RETURNING on SQLite and falls back to one statement per event,
    which made each outcome's event cost about 100 µs of CPU inside the recording
    transaction (docs/PERFORMANCE.md, round 5). The order needs no help here: SQLite
    inserts the rows of a VALUES list in turn, and each takes an id above every id
    before it (``events`` is AUTOINCREMENT), so the ids sorted are the rows' ids in
    order, whatever order RETURNING gives them in. The payload is JSON text, as the
    column's type would have written it (``json.dumps``)."""
    event_ids: list[int] = []
    for start in range(0, len(built), _EVENT_ROWS_PER_STATEMENT):
        part = built[start : start + _EVENT_ROWS_PER_STATEMENT]
        values: list[Any] = []
        for event, _ in part:
            values += (event.at, event.event_type, event.message_id, json.dumps(event.payload))
        statement = (
            "INSERT INTO events (created_at, event_type, message_id, payload) VALUES "
            + ", ".join(["(?, ?, ?, ?)"] * len(part))
            + " RETURNING id"
        )
        event_ids += sorted(row[0] for row in conn.exec_driver_sql(statement, tuple(values)))
    conn.exec_driver_sql(
        "INSERT INTO event_deliveries (event_id, destination) VALUES (?, ?)",
        [
            (event_id, name)
            for event_id, (_, names) in zip(event_ids, built, strict=True)
            for name in names
        ],
    )


def _earlier_results(conn: Connection, retried: Sequence[Any]) -> dict[int, list[dict[str, Any]]]:
    """MailerQ results of the earlier attempts of recipients that have some, from the
    attempt records (only retries pay for this read)."""
    if not retried:
        return {}
    message_ids = sorted({row.message_id for row in retried})
    wanted = {row.id for row in retried}
    found: dict[int, list[dict[str, Any]]] = {}
    for a in conn.execute(
        select(attempts).where(attempts.c.message_id.in_(message_ids)).order_by(attempts.c.id)
    ):
        if a.recipient_id in wanted:
            found.setdefault(a.recipient_id, []).append(
                result_entry(
                    at=a.at,
                    delivered=a.outcome == "delivered",
                    stage=a.stage,
                    ended=a.result,
                    reply=a.reply,
                    source_ip=a.source_ip,
                    remote_ip=a.remote_ip,
                    remote_host=a.remote_host,
                    messages=a.session_messages,
                    dsn=a.remote_dsn,
                )
            )
    return found


# ---- the sender's side ---------------------------------------------------------------


@dataclass(frozen=True)
class PendingEvent:
    id: int
    event_type: str
    created_at: float
    payload: dict[str, Any]


@dataclass(frozen=True)
class DestinationStatus:
    name: str
    backlog: int
    oldest_created_at: float | None
    in_flight: int  # claimed by a sender (sent or being sent, not yet acknowledged)
    last_error: str | None
    last_error_at: float | None
    last_success_at: float | None


class EventOutbox:
    def __init__(
        self,
        store: Store,
        owner: str,
        predecessors: Sequence[str] = (),
        *,
        db_lease_seconds: float | None = None,
    ) -> None:
        """``db_lease_seconds``: on PostgreSQL, claims are timed by the database's clock
        and last this long, as the spool's leases (``store/db_clock.LeaseClock``)."""
        self.store = store
        self.owner = owner
        self.leases = LeaseClock(store.dialect, db_lease_seconds)
        # Earlier processes known to be gone (vmta.store.nodes): their claims are void too.
        self.predecessors = tuple(predecessors)

    def _due(self, destination: str, now: float) -> Any:
        return and_(
            D.destination == destination,
            or_(D.lease_owner.is_(None), D.lease_until < now, D.lease_owner == self.owner),
        )

    def has_due(self, destination: str, now: float) -> bool:
        """Whether ``claim`` would find anything: a read, so that an idle sender polling
        an empty outbox never takes SQLite's write lock."""
        with self.store.read() as conn:
            lease_now = self.leases.now(conn, now)
            found = conn.execute(
                select(D.event_id).where(self._due(destination, lease_now)).limit(1)
            ).first()
        return found is not None

    def claim(
        self, destination: str, limit: int, now: float, lease_until: float
    ) -> list[PendingEvent]:
        """Up to ``limit`` undelivered events for ``destination``, oldest first, claimed
        by this node until ``lease_until``: unclaimed ones, expired claims, and this
        node's own (a batch it is retrying)."""
        with self.store.write() as conn:
            lease_now, lease_until = self.leases.times(conn, now, lease_until)
            due = (
                select(D.event_id)
                .where(self._due(destination, lease_now))
                .order_by(D.event_id)
                .limit(limit)
            )
            if conn.dialect.name == "postgresql":
                due = due.with_for_update(skip_locked=True)
            ids = [row.event_id for row in conn.execute(due)]
            if not ids:
                return []
            conn.execute(
                update(event_deliveries)
                .where(D.destination == destination, D.event_id.in_(ids))
                .values(lease_owner=self.owner, lease_until=lease_until)
            )
            rows = conn.execute(
                select(E.id, E.event_type, E.created_at, E.payload)
                .where(E.id.in_(ids))
                .order_by(E.id)
            )
            return [PendingEvent(r.id, r.event_type, r.created_at, dict(r.payload)) for r in rows]

    def acknowledge(self, destination: str, event_ids: Sequence[int], now: float) -> None:
        """``destination`` has the events: forget them for it, and forget an event once
        every destination has it."""
        if not event_ids:
            return
        ids = list(event_ids)
        with self.store.write() as conn:
            conn.execute(
                delete(event_deliveries).where(D.destination == destination, D.event_id.in_(ids))
            )
            still_wanted = select(D.event_id).where(D.event_id.in_(ids))
            conn.execute(delete(events).where(E.id.in_(ids), E.id.not_in(still_wanted)))
            self._note(conn, destination, last_success_at=now)

    def note_error(self, destination: str, error: str, now: float) -> None:
        with self.store.write() as conn:
            self._note(conn, destination, last_error=error[:1000], last_error_at=now)

    def _note(self, conn: Connection, destination: str, **values: Any) -> None:
        updated = conn.execute(
            update(event_destinations).where(S.name == destination).values(**values)
        )
        if updated.rowcount == 0:
            conn.execute(insert(event_destinations).values(name=destination, **values))

    def release_own(self) -> int:
        """At start-up: this node's claims are void. Returns how many there were: events
        that may have reached their destination already and will be sent again."""
        with self.store.write() as conn:
            result = conn.execute(
                update(event_deliveries)
                .where(D.lease_owner.in_((self.owner, *self.predecessors)))
                .values(lease_owner=None, lease_until=None)
            )
            return int(result.rowcount)

    def status(self, now: float) -> list[DestinationStatus]:
        """Per destination with a backlog or a record: backlog, oldest event, claims,
        last error and last success."""
        with self.store.read() as conn:
            lease_now = self.leases.now(conn, now)
            claimed = and_(D.lease_owner.is_not(None), D.lease_until >= lease_now)
            counts = {
                row.destination: row
                for row in conn.execute(
                    select(
                        D.destination,
                        func.count().label("backlog"),
                        func.min(D.event_id).label("oldest_id"),
                        func.sum(case((claimed, 1), else_=0)).label("in_flight"),
                    ).group_by(D.destination)
                )
            }
            oldest_ids = [row.oldest_id for row in counts.values()]
            created = {
                row.id: row.created_at
                for row in conn.execute(select(E.id, E.created_at).where(E.id.in_(oldest_ids)))
            }
            notes = {row.name: row for row in conn.execute(select(event_destinations))}
        statuses = []
        for name in sorted(set(counts) | set(notes)):
            count = counts.get(name)
            note = notes.get(name)
            statuses.append(
                DestinationStatus(
                    name=name,
                    backlog=int(count.backlog) if count else 0,
                    oldest_created_at=created.get(count.oldest_id) if count else None,
                    in_flight=int(count.in_flight or 0) if count else 0,
                    last_error=note.last_error if note else None,
                    last_error_at=note.last_error_at if note else None,
                    last_success_at=note.last_success_at if note else None,
                )
            )
        return statuses
