"""Local throttles on an injectable clock: exact limits, steady pacing, live limit changes,
no burst after a restart."""

from __future__ import annotations

import itertools
from pathlib import Path

from tests.manual_clock import ManualClock
from vmta.delivery.throttles.throttle_backend import LocalThrottles


async def run_paced(
    throttles: LocalThrottles, clock: ManualClock, per_hour: int, count: int, step: float
) -> list[float]:
    """Send ``count`` messages as soon as their pacing allows, while time moves in
    ``step``s; returns when each went."""
    sent: list[float] = []
    while len(sent) < count:
        if await throttles.reserve_message("k", per_hour) == 0:
            sent.append(clock.now())
        else:
            clock.advance(step)
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
    throttles = LocalThrottles(clock)
    times = await run_paced(throttles, clock, 3600, count=7500, step=0.25)  # ~2 hours
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 1.0 - 1e-9  # steady: no burst at the top of the hour
    assert max(gaps) <= 1.25 + 1e-9  # and no idling while a backlog waits
    assert most_in_any_window(times, 3600.0) <= 3600


async def test_a_refused_reservation_says_how_long_and_takes_nothing() -> None:
    clock = ManualClock()
    throttles = LocalThrottles(clock)
    clock.advance(60)
    assert await throttles.reserve_message("k", 60) == 0
    clock.advance(20)
    for _ in range(3):  # asking again does not push the slot further away
        assert abs(await throttles.reserve_message("k", 60) - 40) < 1e-9
    clock.advance(40)
    assert await throttles.reserve_message("k", 60) == 0


async def test_zero_means_unlimited() -> None:
    clock = ManualClock()
    throttles = LocalThrottles(clock)
    for _ in range(1000):
        assert await throttles.reserve_message("k", 0) == 0  # the clock never moves


async def test_a_new_limit_applies_after_the_slot_taken_under_the_old_one() -> None:
    clock = ManualClock()
    throttles = LocalThrottles(clock)
    first = await run_paced(throttles, clock, 60, count=2, step=1.0)  # one a minute
    assert first[1] - first[0] >= 60
    later = await run_paced(throttles, clock, 3600, count=3, step=0.5)  # one a second
    assert later[0] - first[1] >= 60 - 1e-9
    assert [round(b - a, 1) for a, b in itertools.pairwise(later)] == [1.0, 1.0]


async def test_pacing_continues_across_a_restart(tmp_path: Path) -> None:
    clock = ManualClock()
    memory = tmp_path / "pacing.memory"
    before = LocalThrottles(clock, memory)
    assert await before.reserve_message("k", 60) == 0  # one a minute
    assert await before.reserve_message("other", 3600) == 0
    clock.advance(10)
    # kill -9: nothing is closed or flushed; a new process reads what was written.
    after = LocalThrottles(clock, memory)
    assert abs(await after.reserve_message("k", 60) - 50) < 1e-9
    assert await after.reserve_message("other", 3600) == 0  # its slot had passed
    assert await after.reserve_message("new", 60) == 0  # never paced: at once
    await after.close()
    await before.close()


async def test_a_torn_or_foreign_line_in_the_memory_is_skipped(tmp_path: Path) -> None:
    memory = tmp_path / "pacing.memory"
    clock = ManualClock()
    memory.write_text(f'["k", {clock.now() + 30}]\nnot json\n["half", 1', encoding="utf-8")
    throttles = LocalThrottles(clock, memory)
    assert abs(await throttles.reserve_message("k", 60) - 30) < 1e-9
    assert await throttles.reserve_message("half", 60) == 0
    assert memory.stat().st_mode & 0o777 == 0o600
    await throttles.close()


async def test_connection_slots_follow_the_limit_given_at_each_request() -> None:
    throttles = LocalThrottles(ManualClock())
    a = await throttles.acquire_connection("k", 2)
    b = await throttles.acquire_connection("k", 2)
    assert a and b and await throttles.acquire_connection("k", 2) is None
    c = await throttles.acquire_connection("k", 3)  # raised through the API
    assert c and await throttles.acquire_connection("k", 3) is None
    await throttles.release_connection("k", a)
    assert throttles.open_connections("k") == 2
    assert await throttles.acquire_connection("other", 1)  # keys are independent
    tokens = [await throttles.acquire_connection("k", 0) for _ in range(30)]
    assert all(tokens) and throttles.open_connections("k") == 32  # 0: no limit here


async def test_forget_drops_only_what_has_nothing_left_to_enforce() -> None:
    clock = ManualClock()
    throttles = LocalThrottles(clock)
    clock.advance(10)
    assert await throttles.reserve_message("k", 3600) == 0
    throttles.forget("k")  # its next slot is still ahead: kept
    assert await throttles.reserve_message("k", 3600) > 0
    clock.advance(1)
    throttles.forget("k")
    assert await throttles.reserve_message("k", 3600) == 0
