"""A recipient whose configuration cannot be read (the database is away) is released,
due again shortly, not deferred: no attempt is counted and no deferral event goes out.
Router and recorder are stand-ins here (the dispatcher's decision is what is tested)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.manual_clock import ManualClock
from vmta.delivery.engine.dispatcher import DATABASE_RECHECK, Dispatcher, DispatchSettings
from vmta.delivery.routing.router import Refuse
from vmta.delivery.throttles.throttle_backend import LocalThrottles
from vmta.domain.attempts.delivery_outcome import ReplyLine
from vmta.domain.attempts.retry_schedule import RetrySchedule
from vmta.domain.attempts.spool_records import Job
from vmta.store.database import DatabaseUnavailable

pytestmark = pytest.mark.one_database


class AwayRouter:
    async def decide(self, job: Job) -> Any:
        raise DatabaseUnavailable("database postgresql://db failed: connection refused")


class AwayAfterFirstRouter:
    """Refuses the first recipient, then finds the database away for the second."""

    async def decide(self, job: Job) -> Any:
        if job.recipient_id == 1:
            return Refuse(ReplyLine(550, "5.1.1 suppressed", stage="process"))
        raise DatabaseUnavailable("database postgresql://db failed: connection refused")


class Recorder:
    def __init__(self) -> None:
        self.released: list[tuple[list[int], float, str]] = []
        self.deferred: list[Any] = []

    async def release(self, jobs: list[Job], until: float, reason: str) -> None:
        self.released.append(([j.recipient_id for j in jobs], until, reason))

    async def defer_all(self, *args: Any) -> None:
        self.deferred.append(args)

    async def finish(self, *args: Any) -> None:
        self.deferred.append(args)


def dispatcher_with(router: Any, recorder: Recorder, clock: ManualClock) -> Dispatcher:
    async def never(*_args: Any) -> None:
        raise AssertionError("no connection may open")

    return Dispatcher(
        router=router,
        throttles=LocalThrottles(clock),
        recorder=recorder,  # type: ignore[arg-type]
        clock=clock,
        retry=RetrySchedule(),
        settings=DispatchSettings(),
        spawn=lambda coro: coro.close(),
        open_connection=never,
    )


def two_recipients(now: float) -> list[Job]:
    """Recipients 1 and 2 of message M1."""
    return [
        Job(n, "M1", f"r{n}@dest.test", 0, "s@src.test", now, now + 3600, None, None, False)
        for n in (1, 2)
    ]


async def test_routing_without_the_database_releases_instead_of_deferring() -> None:
    clock = ManualClock()
    recorder = Recorder()
    dispatcher = dispatcher_with(AwayRouter(), recorder, clock)
    now = clock.now()
    await dispatcher.dispatch(two_recipients(now))
    assert recorder.deferred == []
    assert recorder.released == [([1, 2], now + DATABASE_RECHECK, "Waiting for the database.")]


async def test_a_routing_failure_leaves_no_recipient_of_the_message_half_handled() -> None:
    """The first recipient is refused, the second cannot be routed: the whole message is
    released once, and the first is not also finished (it would be handled twice)."""
    clock = ManualClock()
    recorder = Recorder()
    dispatcher = dispatcher_with(AwayAfterFirstRouter(), recorder, clock)
    now = clock.now()
    await dispatcher.dispatch(two_recipients(now))
    assert recorder.deferred == []
    assert recorder.released == [([1, 2], now + DATABASE_RECHECK, "Waiting for the database.")]
