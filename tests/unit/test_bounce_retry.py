"""A bounce is not lost when the database is away just after the failure was stored: the
body read and the queueing are tried again (0.5 s, doubling, at most 30 s apart) until the
database answers. The spool here is a stand-in that fails as the gateway does
(DatabaseUnavailable), with a manual clock."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.manual_clock import ManualClock
from vmta.delivery.outcomes.bounces import BounceMailer
from vmta.domain.attempts.spool_records import FAILED, Job, NewMessage, Outcome
from vmta.store.database import DatabaseUnavailable

pytestmark = pytest.mark.one_database


class FlakySpool:
    def __init__(self, body_failures: int, accept_failures: int) -> None:
        self.body_failures = body_failures
        self.accept_failures = accept_failures
        self.accepted: list[NewMessage] = []
        self.calls = 0

    async def body(self, message_id: str) -> bytes:
        self.calls += 1
        if self.body_failures:
            self.body_failures -= 1
            raise DatabaseUnavailable("the database is unavailable: reset")
        return b"From: a@src.test\r\nSubject: s\r\n\r\nbody\r\n"

    async def accept(self, message: NewMessage, now: float, *, claim: bool = True) -> list[Any]:
        if self.accept_failures:
            self.accept_failures -= 1
            raise DatabaseUnavailable("the database is unavailable: timeout")
        self.accepted.append(message)
        return []


def failure(clock: ManualClock) -> list[tuple[Job, Outcome]]:
    job = Job(
        1,
        "Q1",
        "rcpt@dest.test",
        0,
        "a@src.test",
        clock.now(),
        clock.now() + 9e3,
        None,
        None,
        False,
    )
    outcome = Outcome(1, "Q1", clock.now(), FAILED, reply="550 5.1.1 no such user")
    return [(job, outcome)]


async def test_a_bounce_waits_for_the_database_and_is_queued_once() -> None:
    clock = ManualClock()
    spool = FlakySpool(body_failures=2, accept_failures=1)
    mailer = BounceMailer(
        spool=spool,  # type: ignore[arg-type]
        clock=clock,
        hostname="vmta.test",
        max_lifetime=3600.0,
        due_now=asyncio.Event(),
    )
    task = asyncio.ensure_future(mailer.notify(failure(clock), remote=True))
    for pause in (0.5, 1.0, 2.0):  # two failed body reads, then a failed accept
        for _ in range(50):  # bounded: the loop only yields
            await asyncio.sleep(0)
        assert not task.done() and spool.accepted == []
        clock.advance(pause)
    await asyncio.wait_for(task, 1)
    (bounce,) = spool.accepted
    assert bounce.recipients == ["a@src.test"] and bounce.mail_from == "" and bounce.is_bounce
    assert spool.calls == 4
