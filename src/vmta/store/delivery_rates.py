"""How much mail went where lately: delivery attempts by outcome per minute over the last
hour, and the bounces vmta generated, for the console's Rates page.

Read from the spool's own history (``attempts``, and ``messages`` flagged ``is_bounce``),
so the figures are the cluster's, whichever node made the attempts. The history lasts as
long as the messages (``VMTA_FINISHED_RETENTION``, a day by default).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, Integer, cast, func, select

from vmta.store.store import Store
from vmta.store.tables import attempts, messages

A = attempts.c
M = messages.c
OUTCOMES = ("delivered", "deferred", "failed", "bounced")
MINUTES = 60


@dataclass
class Rates:
    """``per_minute[outcome][i]``: the count in minute ``i`` of the last hour (0 the
    oldest, 59 the minute ending now)."""

    now: float
    per_minute: dict[str, list[int]] = field(
        default_factory=lambda: {o: [0] * MINUTES for o in OUTCOMES}
    )

    def last_minute(self, outcome: str) -> int:
        return self.per_minute[outcome][-1]

    def last_hour(self, outcome: str) -> int:
        return sum(self.per_minute[outcome])


def _minute(column: ColumnElement[float], start: float, dialect: str) -> ColumnElement[int]:
    offset = (column - start) / 60.0
    if dialect == "postgresql":
        return cast(func.floor(offset), Integer)  # a cast alone rounds in PostgreSQL
    return cast(offset, Integer)  # SQLite truncates, and the offset is never negative


def recent_rates(store: Store, now: float) -> Rates:
    start = now - MINUTES * 60.0
    rates = Rates(now)
    attempt_minute = _minute(A.at, start, store.dialect)
    bounce_minute = _minute(M.received_at, start, store.dialect)
    with store.read() as conn:
        for row in conn.execute(
            select(attempt_minute.label("minute"), A.outcome, func.count().label("n"))
            .where(A.at > start, A.at <= now)
            .group_by(attempt_minute, A.outcome)
        ):
            if row.outcome in rates.per_minute and 0 <= row.minute < MINUTES:
                rates.per_minute[row.outcome][row.minute] += int(row.n)
        for row in conn.execute(
            select(bounce_minute.label("minute"), func.count().label("n"))
            .where(M.is_bounce.is_(True), M.received_at > start, M.received_at <= now)
            .group_by(bounce_minute)
        ):
            if 0 <= row.minute < MINUTES:
                rates.per_minute["bounced"][row.minute] += int(row.n)
    return rates
