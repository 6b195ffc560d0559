"""The spool's two hottest writes, accepting messages and recording outcomes, in the
database driver's own statements (``SqlSpool.writer``).

Every accepted message and every delivery attempt passes through here, on the one writer
thread, inside the transaction that holds the database's write lock (SQLite: the whole
file, shared by every process of the node). Built as SQLAlchemy Core statements these two
were most of the writer's time: compiling, caching and binding cost more than the rows,
the lock was held meanwhile, and each Python stretch of the writer made the event loop
wait for the GIL. Here every parameter is prepared before the first statement, inserts
carry many rows per statement (SQLite, since 3.35, and PostgreSQL both take ``VALUES``
lists with ``RETURNING``), and only the driver runs inside the transaction. Measured in
docs/PERFORMANCE.md ("Relay throughput, round 3").

Driver errors are raised as SQLAlchemy's (``DBAPIError.instance``), so that the store's
callers see what they would have seen from a Core statement: a full disk or a lost
connection is still a temporary ``DatabaseUnavailable`` (``Store.write``).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from vmta.domain.attempts.spool_records import QUEUED, Job, NewMessage, Outcome
from vmta.domain.message.wire_form import WIRE, to_wire
from vmta.domain.reports.bad_address import BadAddressPolicy
from vmta.domain.reports.delivery_event import EventSubscription
from vmta.store.bad_addresses import count_final_failures
from vmta.store.db_clock import LeaseClock
from vmta.store.event_outbox import write_outcome_events
from vmta.store.store import Store

# Rows per multi-row statement: far below SQLite's 32,766 and PostgreSQL's 65,535 bound
# parameters for the widest row (14 columns).
ROWS_PER_STATEMENT = 500

_MESSAGE_COLUMNS = (
    "id",
    "received_at",
    "expires_at",
    "mail_from",
    "size",
    "body",
    "body_format",
    "vmta_selector",
    "client_ip",
    "auth_name",
    "is_bounce",
    "kept_headers",
    "mq_options",
)
_JSON_COLUMNS = frozenset({"kept_headers", "mq_options", "routing_memory"})
_RECIPIENT_COLUMNS = (
    "message_id",
    "address",
    "state",
    "attempts",
    "next_attempt_at",
    "lease_owner",
    "lease_until",
    "updated_at",
)
_ATTEMPT_COLUMNS = (
    "message_id",
    "recipient_id",
    "at",
    "outcome",
    "virtual_mta",
    "effective_virtual_mta",
    "source_ip",
    "remote_host",
    "remote_ip",
    "reply",
    "stage",
    "result",
    "session_messages",
    "remote_dsn",
)


def recipient_values(o: Outcome) -> dict[str, Any]:
    """The columns an outcome sets on its recipient (``attempts`` aside: it is counted up
    in SQL)."""
    values: dict[str, Any] = {
        "state": o.state,
        "lease_owner": None,
        "lease_until": None,
        "updated_at": o.at,
        "waiting_reason": o.waiting_reason,
    }
    if o.next_attempt_at is not None:
        values["next_attempt_at"] = o.next_attempt_at
    if o.attempted:
        values["last_attempt_at"] = o.at
        values["last_reply"] = o.reply
        values["virtual_mta"] = o.virtual_mta
    elif o.reply is not None:
        values["last_reply"] = o.reply
    return values


def _json_text(value: Any) -> str | None:
    """A mapping as JSON text; none, or an empty one, as SQL NULL."""
    return json.dumps(dict(value)) if value else None


def _chunks(rows: Sequence[tuple[Any, ...]], size: int) -> Iterator[Sequence[tuple[Any, ...]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


@dataclass
class PreparedAccept:
    """An accept's rows, built before its transaction."""

    batch: Sequence[NewMessage]
    claims: list[bool]
    mq_texts: list[str | None]
    message_rows: list[tuple[Any, ...]]
    lease_until: float | None
    recipient_rows: list[tuple[Any, ...]] = field(default_factory=list)


@dataclass
class PreparedRecord:
    """A record's statements and rows, built before its transaction."""

    outcomes: Sequence[Outcome]
    runs: list[tuple[str, list[tuple[Any, ...]]]]
    memory: list[tuple[str, str]]
    attempt_rows: list[tuple[Any, ...]]


class DriverSql:
    """SQL text in the driver's parameter style, with the casts the dialect needs."""

    def __init__(self, dialect: str, paramstyle: str) -> None:
        self.mark = "?" if paramstyle == "qmark" else "%s"
        # PostgreSQL infers a bound text's type from its column in INSERT and SET, except
        # that text is not JSON without a cast.
        self.json_mark = f"CAST({self.mark} AS JSON)" if dialect == "postgresql" else self.mark
        # sqlite3 keeps up to 128 prepared statements per connection, and SQLite keeps a
        # statement's bound values until it is bound again: a cached INSERT of N messages
        # held a copy of N bodies. Multi-row INSERTs of every N from 1 to the sessions'
        # count kept megabytes of old bodies each (64 MB in the writer's malloc arena at
        # 100 KB). One row per statement, executemany'd, holds one body at most.
        self.one_row_per_body = dialect == "sqlite"
        self._updates: dict[tuple[tuple[str, ...], bool], str] = {}

    def placeholders(self, columns: Sequence[str]) -> str:
        marks = (self.json_mark if c in _JSON_COLUMNS else self.mark for c in columns)
        return "(" + ", ".join(marks) + ")"

    def insert(self, table: str, columns: Sequence[str], rows: int, returning: str = "") -> str:
        values = ", ".join([self.placeholders(columns)] * rows)
        tail = f" RETURNING {returning}" if returning else ""
        return f"INSERT INTO {table} ({', '.join(columns)}) VALUES {values}{tail}"

    def recipient_update(self, columns: tuple[str, ...], attempted: bool) -> str:
        """UPDATE of one leased recipient, setting ``columns`` (then id and owner)."""
        key = (columns, attempted)
        sql = self._updates.get(key)
        if sql is None:
            sets = [f"{c} = {self.json_mark if c in _JSON_COLUMNS else self.mark}" for c in columns]
            if attempted:
                sets.append("attempts = attempts + 1")
            where = f"id = {self.mark} AND lease_owner = {self.mark}"
            sql = self._updates[key] = f"UPDATE recipients SET {', '.join(sets)} WHERE {where}"
        return sql

    def id_in(self, table: str, count: int) -> str:
        return f"SELECT id FROM {table} WHERE id IN ({', '.join([self.mark] * count)})"


class SpoolWriter:
    """The accept and the outcome writes of one spool owner (``SqlSpool.writer``)."""

    def __init__(
        self,
        store: Store,
        owner: str,
        leases: LeaseClock,
        event_subscriptions: tuple[EventSubscription, ...],
        bad_address_policy: BadAddressPolicy | None,
    ) -> None:
        self.store = store
        self.owner = owner
        self.leases = leases
        self.event_subscriptions = event_subscriptions
        self.bad_address_policy = bad_address_policy
        self.sql = DriverSql(store.dialect, store.engine.dialect.paramstyle)

    def _lease_clock(self, conn: Connection, now: float, lease_until: float) -> tuple[float, float]:
        """(now, lease_until) of a lease decision: the caller's, or the database's."""
        return self.leases.times(conn, now, lease_until)

    @contextmanager
    def _cursor(self, conn: Connection) -> Iterator[Any]:
        """A driver cursor in ``conn``'s transaction; driver errors as SQLAlchemy's."""
        dbapi = self.store.engine.dialect.loaded_dbapi
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            yield cursor
        except dbapi.Error as exc:
            # Parameters hidden: they hold whole message bodies.
            raise DBAPIError.instance(None, None, exc, dbapi.Error, hide_parameters=True) from exc
        finally:
            cursor.close()

    def accept_in(
        self,
        conn: Connection,
        batch: Sequence[NewMessage],
        lease_until: float | None,
        unclaimed: Collection[str] = (),
    ) -> list[Job]:
        """Store ``batch`` inside the caller's transaction (``SqlSpool.accept``)."""
        return self.accept_prepared(conn, self.prepare_accept(batch, lease_until, unclaimed))

    def record_in(self, conn: Connection, outcomes: Sequence[Outcome]) -> None:
        """Apply ``outcomes`` inside the caller's transaction (``SqlSpool.record``)."""
        self.record_prepared(conn, self.prepare_record(outcomes))

    # Each write in two halves: rows built before the transaction begins, so that on
    # SQLite the write lock is held only while the driver runs.

    def prepare_accept(
        self, batch: Sequence[NewMessage], lease_until: float | None, unclaimed: Collection[str]
    ) -> PreparedAccept:
        unclaimed = set(unclaimed)
        mq_texts = [_json_text(m.mq_options) for m in batch]
        claims = [lease_until is not None and m.id not in unclaimed for m in batch]
        # Bodies in wire form (domain/message/wire_form.py); the intake's are already.
        bodies = [m.body if m.wire_form else to_wire(m.body) for m in batch]
        message_rows = [
            (
                m.id,
                m.received_at,
                m.expires_at,
                m.mail_from,
                len(body),
                body,
                WIRE,
                m.vmta_selector,
                m.client_ip,
                m.auth_name,
                bool(m.is_bounce),
                _json_text(m.kept_headers),
                mq_text,
            )
            for m, body, mq_text in zip(batch, bodies, mq_texts, strict=True)
        ]
        prepared = PreparedAccept(batch, claims, mq_texts, message_rows, lease_until)
        prepared.recipient_rows = self._recipient_rows(prepared, lease_until)
        return prepared

    def _recipient_rows(
        self, prepared: PreparedAccept, lease_until: float | None
    ) -> list[tuple[Any, ...]]:
        return [
            (
                m.id,
                address,
                QUEUED,
                0,
                m.received_at,
                self.owner if claim else None,
                lease_until if claim else None,
                m.received_at,
            )
            for m, claim in zip(prepared.batch, prepared.claims, strict=True)
            for address in m.recipients
        ]

    def accept_prepared(self, conn: Connection, prepared: PreparedAccept) -> list[Job]:
        """Insert a prepared batch; returns the jobs of the recipients it claimed, in
        recipient id order."""
        sql = self.sql
        if prepared.lease_until is not None:
            lease_until = self._lease_clock(conn, 0.0, prepared.lease_until)[1]
            if lease_until != prepared.lease_until:  # the database's clock decides
                prepared.recipient_rows = self._recipient_rows(prepared, lease_until)
        ids: dict[tuple[str, str], list[int]] = {}
        with self._cursor(conn) as cursor:
            if sql.one_row_per_body:
                single = sql.insert("messages", _MESSAGE_COLUMNS, 1)
                cursor.executemany(single, prepared.message_rows)
            else:
                for rows in _chunks(prepared.message_rows, ROWS_PER_STATEMENT):
                    statement = sql.insert("messages", _MESSAGE_COLUMNS, len(rows))
                    cursor.execute(statement, [value for row in rows for value in row])
            for rows in _chunks(prepared.recipient_rows, ROWS_PER_STATEMENT):
                statement = sql.insert(
                    "recipients", _RECIPIENT_COLUMNS, len(rows), "id, message_id, address"
                )
                cursor.execute(statement, [value for row in rows for value in row])
                for recipient_id, message_id, address in cursor.fetchall():
                    ids.setdefault((message_id, address), []).append(recipient_id)
        if prepared.lease_until is None:
            return []
        jobs: list[Job] = []
        chosen = zip(prepared.batch, prepared.claims, prepared.mq_texts, strict=True)
        for m, claim, mq_text in chosen:
            if not claim:
                continue
            mq_options = None if mq_text is None else json.loads(mq_text)
            for address in m.recipients:
                same = ids[(m.id, address)]
                same.sort(reverse=True)  # duplicates of one address: lowest id first
                jobs.append(
                    Job(
                        recipient_id=same.pop(),
                        message_id=m.id,
                        address=address,
                        attempts=0,
                        mail_from=m.mail_from,
                        received_at=m.received_at,
                        expires_at=m.expires_at,
                        vmta_selector=m.vmta_selector,
                        routing_memory=None,
                        is_bounce=bool(m.is_bounce),
                        mq_options=mq_options,
                    )
                )
        jobs.sort(key=lambda job: job.recipient_id)
        return jobs

    def prepare_record(self, outcomes: Sequence[Outcome]) -> PreparedRecord:
        """Consecutive outcomes that set the same columns share one executemany UPDATE,
        in their order."""
        sql = self.sql
        runs: list[tuple[str, list[tuple[Any, ...]]]] = []
        shape: tuple[tuple[str, ...], bool] | None = None
        for o in outcomes:
            values = recipient_values(o)
            key = (tuple(values), o.attempted)
            if key != shape:
                runs.append((sql.recipient_update(*key), []))
                shape = key
            runs[-1][1].append((*values.values(), o.recipient_id, self.owner))
        memory = [
            (json.dumps(o.routing_memory), o.message_id)
            for o in outcomes
            if o.routing_memory is not None
        ]
        attempt_rows = [
            (
                o.message_id,
                o.recipient_id,
                o.at,
                o.outcome_label or o.state,
                o.virtual_mta,
                o.effective_virtual_mta,
                o.source_ip,
                o.remote_host,
                o.remote_ip,
                o.reply,
                o.stage,
                o.result,
                o.session_messages,
                o.remote_dsn,
            )
            for o in outcomes
            if o.attempted
        ]
        return PreparedRecord(outcomes, runs, memory, attempt_rows)

    def record_prepared(self, conn: Connection, prepared: PreparedRecord) -> None:
        sql = self.sql
        # First: it reads the attempt counts as they were before these outcomes.
        write_outcome_events(conn, prepared.outcomes, self.owner, self.event_subscriptions)
        if self.bad_address_policy is not None:
            count_final_failures(
                conn,
                prepared.outcomes,
                self.owner,
                self.bad_address_policy,
                self.event_subscriptions,
            )
        with self._cursor(conn) as cursor:
            for statement, rows in prepared.runs:
                cursor.executemany(statement, rows)
            if prepared.memory:
                cursor.executemany(
                    f"UPDATE messages SET routing_memory = {sql.json_mark} WHERE id = {sql.mark}",
                    prepared.memory,
                )
            # A recipient whose message an operator deleted meanwhile has no row left to
            # attach an attempt to; its outcome simply has nothing to change.
            attempted = sorted({row[1] for row in prepared.attempt_rows})
            present: set[int] = set()
            for start in range(0, len(attempted), ROWS_PER_STATEMENT):
                chunk = attempted[start : start + ROWS_PER_STATEMENT]
                cursor.execute(sql.id_in("recipients", len(chunk)), chunk)
                present.update(row[0] for row in cursor.fetchall())
            rows = [row for row in prepared.attempt_rows if row[1] in present]
            for part in _chunks(rows, ROWS_PER_STATEMENT):
                statement = sql.insert("attempts", _ATTEMPT_COLUMNS, len(part))
                cursor.execute(statement, [value for row in part for value in row])
