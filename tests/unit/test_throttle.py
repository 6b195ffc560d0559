"""Throttles on an injectable clock: exact limits, steady pacing, live limit changes."""

from __future__ import annotations

import asyncio
import itertools

from vmta.delivery.clock import ManualClock
from vmta.delivery.throttle import ConnectionLimiter, MessagePacer
from vmta.domain.virtual_mta import Limits


async def run_paced(
    pacer: MessagePacer, clock: ManualClock, count: int, step: float
) -> list[float]:
    """Send ``count`` messages through the pacer while time moves in ``step``s."""
    sent: list[float] = []

    async def sender() -> None:
        for _ in range(count):
            await pacer.acquire()
            sent.append(clock.now())

    task = asyncio.create_task(sender())
    while not task.done():
        for _ in range(3):
            await asyncio.sleep(0)
        clock.advance(step)
    await task
    return sent


def most_in_any_window(times: list[float], window: float) -> int:
    best, start = 0, 0
    for end, t in enumerate(times):
        while times[start] <= t - window:  # half-open window (t - window, t]
            start += 1
        best = max(best, end - start + 1)
    return best


async def test_3600_an_hour_is_one_a_second_and_never_more_in_any_hour() -> None:
    clock = ManualClock()
    pacer = MessagePacer(lambda: Limits(0, 3600), clock)
    times = await run_paced(pacer, clock, count=7500, step=0.25)  # a backlog of ~2 hours
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 1.0 - 1e-9  # steady: no burst at the top of the hour
    assert max(gaps) <= 1.25 + 1e-9  # and no idling while a backlog waits
    assert most_in_any_window(times, 3600.0) <= 3600


async def test_zero_means_unlimited() -> None:
    clock = ManualClock()
    pacer = MessagePacer(lambda: Limits(0, 0), clock)
    for _ in range(1000):
        await pacer.acquire()  # never sleeps: the clock never moves
    assert clock.now() == ManualClock().now() and pacer.sent == 1000


async def test_a_new_limit_applies_to_the_next_message() -> None:
    clock = ManualClock()
    limits = {"now": Limits(0, 60)}  # one a minute
    pacer = MessagePacer(lambda: limits["now"], clock)
    first = await run_paced(pacer, clock, count=2, step=1.0)
    assert first[1] - first[0] >= 60
    limits["now"] = Limits(0, 3600)  # one a second from now on
    later = await run_paced(pacer, clock, count=3, step=0.5)
    assert [round(b - a, 1) for a, b in itertools.pairwise(later)] == [1.0, 1.0]


async def test_pacing_continues_across_a_restart() -> None:
    clock = ManualClock()
    pacer = MessagePacer(lambda: Limits(0, 60), clock)
    pacer.seed(clock.now() - 10)  # the last message went 10 s ago, before a restart
    assert abs(pacer.delay() - 50) < 1e-9


def test_connection_limiter_follows_its_limit() -> None:
    limits = {"now": Limits(2, 0)}
    limiter = ConnectionLimiter(lambda: limits["now"], fallback=20)
    assert limiter.try_acquire() and limiter.try_acquire()
    assert not limiter.try_acquire()
    limits["now"] = Limits(3, 0)
    assert limiter.try_acquire() and not limiter.try_acquire()
    limiter.release()
    limits["now"] = Limits(0, 0)  # unlimited: capped by the fallback only
    assert sum(limiter.try_acquire() for _ in range(30)) == 18
    assert limiter.peak == 20
