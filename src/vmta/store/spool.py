"""The durable spool on SQLite or PostgreSQL: messages, recipients, attempts.

Every method is one short transaction and blocking; the delivery engine calls them from a
worker thread (``vmta.delivery.engine.committer``) and batches many requests into one call, so
that many SMTP sessions share one commit (one fsync) instead of paying one each.

Work is claimed with leases (``lease_owner``, ``lease_until``), not row locks: SQLite has
no ``SELECT ... FOR UPDATE``, and a lease left behind by a crash tells recovery what was
claimed. On PostgreSQL the claim also uses ``FOR UPDATE SKIP LOCKED`` so that several
nodes never wait on, nor take, each other's rows.

Lease times. By default a lease runs on the caller's clock: ``lease_until`` and ``now``
are what the caller passes (SQLite, one machine, and tests on a manual clock). A spool
made with ``db_lease_seconds`` on PostgreSQL times every lease by the database's clock
instead (``vmta.store.db_clock``): a lease it writes ends ``db_lease_seconds`` after the
database's now, and a lease it checks is compared with the database's now, so nodes whose
clocks disagree never take each other's work early. The ``lease_until`` arguments are
then not used. When a recipient is due (``next_attempt_at``) stays the caller's clock: a
retry schedule is not a claim, and a skewed clock only moves a retry by the skew.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    func,
    or_,
    select,
    update,
)

from vmta.domain.attempts.spool_records import QUEUED, Job, NewMessage, Outcome
from vmta.domain.message.wire_form import WIRE, to_wire
from vmta.domain.reports.bad_address import BadAddressPolicy
from vmta.domain.reports.delivery_event import EventSubscription
from vmta.store.db_clock import LeaseClock
from vmta.store.nodes import beat
from vmta.store.spool_inspection import SpoolInspector
from vmta.store.spool_maintenance import SpoolHousekeeping
from vmta.store.spool_writes import ROWS_PER_STATEMENT, SpoolWriter
from vmta.store.store import Store
from vmta.store.tables import messages, recipients

R = recipients.c
M = messages.c


def _job(row: Any) -> Job:
    return Job(
        recipient_id=row.id,
        message_id=row.message_id,
        address=row.address,
        attempts=row.attempts,
        mail_from=row.mail_from,
        received_at=row.received_at,
        expires_at=row.expires_at,
        vmta_selector=row.vmta_selector,
        routing_memory=row.routing_memory,
        is_bounce=bool(row.is_bounce),
        mq_options=row.mq_options,
    )


_JOB_COLUMNS = (
    R.id,
    R.message_id,
    R.address,
    R.attempts,
    M.mail_from,
    M.received_at,
    M.expires_at,
    M.vmta_selector,
    M.routing_memory,
    M.is_bounce,
    M.mq_options,
)


class SqlSpool:
    def __init__(
        self,
        store: Store,
        owner: str,
        *,
        db_lease_seconds: float | None = None,
        predecessors: Sequence[str] = (),
        event_subscriptions: Sequence[EventSubscription] = (),
        bad_address_policy: BadAddressPolicy | None = None,
    ) -> None:
        """``owner`` names this node in leases. ``db_lease_seconds``: see the module
        docstring (no effect on SQLite). ``predecessors``: nodes known to be gone
        (``vmta.store.nodes``) whose leases ``release_own_leases`` releases too."""
        self.store = store
        self.owner = owner
        self.leases = LeaseClock(store.dialect, db_lease_seconds)
        self.predecessors = tuple(predecessors)
        # Destinations that get an event for each outcome (docs/events.md); none: no
        # event is written and recording costs nothing more.
        self.event_subscriptions = tuple(event_subscriptions)
        # The bad-address threshold applied to synchronous bounces (None: not counted,
        # as for the operator's tools).
        self.bad_address_policy = bad_address_policy
        # Its parts: the two hot writes in the driver's own statements, the reads for
        # people, and operator actions with the purge.
        self.writer = SpoolWriter(
            store, owner, self.leases, self.event_subscriptions, bad_address_policy
        )
        self.inspector = SpoolInspector(store)
        self.housekeeping = SpoolHousekeeping(store)

    def _lease_clock(self, conn: Connection, now: float, lease_until: float) -> tuple[float, float]:
        """(now, lease_until) of a lease decision: the caller's, or the database's."""
        return self.leases.times(conn, now, lease_until)

    def purge_finished(self, before: float, limit: int = 1000) -> int:
        """Delete finished messages received before ``before`` (the ``Spool`` port's)."""
        return self.housekeeping.purge_finished(before, limit)

    # ---- accepting -----------------------------------------------------------------

    def accept(
        self,
        batch: Sequence[NewMessage],
        lease_until: float | None,
        unclaimed: Collection[str] = (),
    ) -> list[Job]:
        """Store every message of ``batch`` in one transaction. With ``lease_until`` the
        recipients are claimed by this node at once (the fast path: no poll needed), and
        returned as jobs; messages whose id is in ``unclaimed`` are stored unclaimed, for
        any node's poll (the node had no room for them in memory)."""
        if not batch:
            return []
        with self.store.write() as conn:
            return self.writer.accept_in(conn, batch, lease_until, unclaimed)

    def write_cycle(
        self,
        batch: Sequence[NewMessage],
        lease_until: float | None,
        unclaimed: Collection[str],
        outcomes: Sequence[Outcome],
    ) -> list[Job]:
        """The accepts and the outcomes of one writer cycle in one transaction: one commit
        (one fsync) instead of two. Returns the accepted messages' claimed jobs."""
        accepting = self.writer.prepare_accept(batch, lease_until, unclaimed) if batch else None
        recording = self.writer.prepare_record(outcomes) if outcomes else None
        with self.store.write() as conn:
            jobs = self.writer.accept_prepared(conn, accepting) if accepting else []
            if recording:
                self.writer.record_prepared(conn, recording)
            return jobs

    # ---- claiming ------------------------------------------------------------------

    def claim_due(self, now: float, limit: int, lease_until: float) -> list[Job]:
        """Claim up to ``limit`` recipients that are due and not claimed by a live lease."""
        with self.store.write() as conn:
            lease_now, lease_until = self._lease_clock(conn, now, lease_until)
            due = (
                select(R.id)
                .where(
                    R.state == QUEUED,
                    R.next_attempt_at <= now,
                    or_(R.lease_owner.is_(None), R.lease_until < lease_now),
                )
                .order_by(R.next_attempt_at, R.id)
                .limit(limit)
            )
            if conn.dialect.name == "postgresql":
                due = due.with_for_update(skip_locked=True)
            ids = [row.id for row in conn.execute(due)]
            if not ids:
                return []
            conn.execute(
                update(recipients)
                .where(R.id.in_(ids))
                .values(lease_owner=self.owner, lease_until=lease_until)
            )
            result = conn.execute(
                select(*_JOB_COLUMNS)
                .join(messages, M.id == R.message_id)
                .where(R.id.in_(ids))
                .order_by(R.id)
            )
            return [_job(row) for row in result]

    def renew_leases(self, lease_until: float) -> int:
        """Extend every lease this node holds (a heartbeat while work waits in memory),
        and note in ``nodes`` that this node is alive."""
        with self.store.write() as conn:
            lease_until = self._lease_clock(conn, 0.0, lease_until)[1]
            beat(conn, self.owner)
            result = conn.execute(
                update(recipients)
                .where(R.lease_owner == self.owner, R.state == QUEUED)
                .values(lease_until=lease_until)
            )
            return int(result.rowcount)

    def release_own_leases(self, now: float) -> int:
        """At start-up: leases this node, and the ``predecessors`` that are gone, held
        before they stopped are void. Returns how many recipients were claimed and
        unfinished."""
        with self.store.write() as conn:
            result = conn.execute(
                update(recipients)
                .where(R.lease_owner.in_((self.owner, *self.predecessors)), R.state == QUEUED)
                .values(lease_owner=None, lease_until=None, updated_at=now)
            )
            return int(result.rowcount)

    def queued_count(self) -> int:
        """Recipients waiting in the spool (every node's: the spool is shared)."""
        with self.store.read() as conn:
            query = select(func.count()).select_from(recipients).where(R.state == QUEUED)
            return int(conn.execute(query).scalar() or 0)

    def next_due_at(self) -> float | None:
        with self.store.read() as conn:
            value = conn.execute(
                select(func.min(R.next_attempt_at)).where(
                    R.state == QUEUED, R.lease_owner.is_(None)
                )
            ).scalar()
        return None if value is None else float(value)

    # ---- bodies ----------------------------------------------------------------------

    def body(self, message_id: str) -> bytes | None:
        return self.bodies([message_id]).get(message_id)

    def bodies(self, message_ids: Sequence[str]) -> dict[str, bytes]:
        """The bodies of the messages that still exist, in wire form (domain/message/wire_form.py),
        read for every message sent: through the driver directly, which costs an eighth
        of a Core query here (27 against 228 µs a read on SQLite, measured for
        docs/PERFORMANCE.md), and for many messages at once (the delivery engine batches
        the reads of its connections). A body stored before revision 0014 is put in wire
        form here, as the SMTP client used to at each attempt."""
        found: dict[str, bytes] = {}
        unique = list(dict.fromkeys(message_ids))
        raw = self.store.engine.raw_connection()
        try:
            cursor = raw.cursor()
            try:
                for start in range(0, len(unique), ROWS_PER_STATEMENT):
                    chunk = unique[start : start + ROWS_PER_STATEMENT]
                    marks = ", ".join([self.writer.sql.mark] * len(chunk))
                    cursor.execute(
                        f"SELECT id, body, body_format FROM messages WHERE id IN ({marks})",
                        chunk,
                    )
                    found.update(
                        (key, bytes(body) if form == WIRE else to_wire(bytes(body)))
                        for key, body, form in cursor.fetchall()
                    )
            finally:
                cursor.close()
        finally:
            raw.close()  # back to the pool, which ends the read transaction
        return found

    # ---- outcomes ------------------------------------------------------------------

    def record(self, outcomes: Sequence[Outcome]) -> None:
        """Apply outcomes in one transaction: recipient state, attempt rows, memory, and
        their events in the outbox (so that an event exists exactly when its outcome does).

        Consecutive outcomes that set the same columns share one executemany UPDATE, in
        their order: building one statement per outcome was the spool writer's largest
        cost under load (docs/PERFORMANCE.md, "Relay throughput vs Postfix").
        """
        if not outcomes:
            return
        with self.store.write() as conn:
            self.writer.record_in(conn, outcomes)
