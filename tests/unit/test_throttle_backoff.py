"""Dynamic Delivery for one throttle: rates over the window, triggers, reduced limits,
return_after and ending by hand. Pure logic, driven by explicit times."""

from __future__ import annotations

import pytest

from vmta.domain.config.virtual_mta import Limits
from vmta.domain.limits.throttle_backoff import (
    MIN_ATTEMPTS,
    WINDOW_SECONDS,
    AttemptOutcome,
    Backoff,
    BackoffTracker,
    reduced_limits,
)
from vmta.domain.limits.throttle_program import (
    BackoffLimits,
    BackoffMode,
    BackoffValue,
    ThrottleProgram,
)

T0 = 1_700_000_000.0
NORMAL = Limits(max_concurrent_connections=10, max_messages_per_hour=1000)
D, F, OK = AttemptOutcome.DEFERRED, AttemptOutcome.FAILED, AttemptOutcome.DELIVERED


def program(
    *,
    deferral: int | None = 50,
    failure: int | None = None,
    conn: tuple[BackoffMode, int] = (BackoffMode.FIXED, 1),
    msgs: tuple[BackoffMode, int] = (BackoffMode.PERCENT, 10),
    return_after: int = 600,
) -> ThrottleProgram:
    return ThrottleProgram(
        name="p",
        backoff=BackoffLimits(BackoffValue(*conn), BackoffValue(*msgs)),
        return_after=return_after,
        deferral_rate=deferral,
        failure_rate=failure,
    )


def feed(
    tracker: BackoffTracker,
    prog: ThrottleProgram,
    outcomes: list[AttemptOutcome],
    start: float = T0,
) -> float:
    """One attempt a second from ``start``; returns the time of the last."""
    now = start
    for i, outcome in enumerate(outcomes):
        now = start + i
        tracker.observe(prog, outcome, now)
    return now


def test_deferral_rate_reached_puts_the_throttle_in_backoff() -> None:
    tracker, prog = BackoffTracker(), program(deferral=50)
    last = feed(tracker, prog, [OK, D] * (MIN_ATTEMPTS // 2))  # exactly 50 %
    backoff = tracker.current(last)
    assert backoff is not None
    assert backoff.began_at == last and backoff.ends_at == last + 600
    assert backoff.reason == "throttle_program"
    assert tracker.limits(prog, NORMAL, last) == Limits(1, 100)


def test_below_the_rate_nothing_happens() -> None:
    tracker, prog = BackoffTracker(), program(deferral=50)
    last = feed(tracker, prog, [OK, OK, D] * 10)  # 33 %
    assert tracker.current(last) is None
    assert tracker.limits(prog, NORMAL, last) == NORMAL


def test_no_trigger_before_the_minimum_number_of_attempts() -> None:
    tracker, prog = BackoffTracker(), program(deferral=10)
    last = feed(tracker, prog, [D] * (MIN_ATTEMPTS - 1))
    assert tracker.current(last) is None
    tracker.observe(prog, D, last + 1)
    assert tracker.current(last + 1) is not None


def test_failure_rate_triggers_on_failures_only() -> None:
    tracker, prog = BackoffTracker(), program(deferral=None, failure=30)
    last = feed(tracker, prog, [D] * 20)  # deferrals do not count as failures
    assert tracker.current(last) is None
    # 10 failures among 40 attempts: 25 %, below 30 %; five more make 15 of 45, 33 %.
    last = feed(tracker, prog, [F, OK] * 10, start=last + 1)
    assert tracker.current(last) is None
    last = feed(tracker, prog, [F] * 5, start=last + 1)
    assert tracker.current(last) is not None


def test_attempts_older_than_the_window_are_forgotten() -> None:
    tracker, prog = BackoffTracker(), program(deferral=50)
    for i in range(MIN_ATTEMPTS - 1):
        tracker.observe(prog, D, T0 + i)
    later = T0 + WINDOW_SECONDS + MIN_ATTEMPTS
    # The old deferrals left the window: one new deferral is 1 attempt, not 10.
    tracker.observe(prog, D, later)
    assert tracker.rates(later) == (1, 0.0, 100.0)
    assert tracker.current(later) is None


def test_backoff_ends_after_return_after() -> None:
    tracker, prog = BackoffTracker(), program(return_after=300)
    last = feed(tracker, prog, [D] * MIN_ATTEMPTS)
    assert tracker.limits(prog, NORMAL, last + 299.9) == Limits(1, 100)
    assert tracker.current(last + 300) is None
    assert tracker.limits(prog, NORMAL, last + 300) == NORMAL


def test_outcomes_in_backoff_do_not_extend_it_and_evidence_starts_afresh() -> None:
    tracker, prog = BackoffTracker(), program(return_after=300)
    last = feed(tracker, prog, [D] * MIN_ATTEMPTS)
    for i in range(50):
        tracker.observe(prog, D, last + 1 + i)
    assert tracker.current(last + 300) is None
    # After the return, a single deferral is not enough to go back into backoff.
    tracker.observe(prog, D, last + 301)
    assert tracker.current(last + 301) is None
    assert tracker.rates(last + 301)[0] == 1


def test_end_by_hand() -> None:
    tracker, prog = BackoffTracker(), program()
    last = feed(tracker, prog, [D] * MIN_ATTEMPTS)
    assert tracker.end() is True
    assert tracker.current(last) is None and tracker.limits(prog, NORMAL, last) == NORMAL
    assert tracker.end() is False


def test_without_a_program_nothing_is_measured() -> None:
    tracker = BackoffTracker()
    for i in range(50):
        tracker.observe(None, D, T0 + i)
    assert tracker.current(T0 + 50) is None and tracker.rates(T0 + 50)[0] == 0


def test_a_backoff_outlives_the_program_being_removed() -> None:
    tracker, prog = BackoffTracker(), program()
    last = feed(tracker, prog, [D] * MIN_ATTEMPTS)
    assert tracker.limits(None, NORMAL, last + 1) == Limits(1, 100)


@pytest.mark.parametrize(
    ("mode", "value", "normal", "expected"),
    [
        (BackoffMode.PERCENT, 50, 10, 5),
        (BackoffMode.PERCENT, 10, 5, 1),  # rounded down, but never below 1
        (BackoffMode.PERCENT, 150, 10, 10),  # never above the normal limit
        (BackoffMode.PERCENT, 50, 0, 0),  # a share of unlimited stays unlimited
        (BackoffMode.FIXED, 3, 10, 3),
        (BackoffMode.FIXED, 30, 10, 10),  # never above the normal limit
        (BackoffMode.FIXED, 3, 0, 3),  # a fixed value caps an unlimited throttle
    ],
)
def test_backoff_values(mode: BackoffMode, value: int, normal: int, expected: int) -> None:
    prog = program(conn=(mode, value), msgs=(mode, value))
    assert reduced_limits(prog, Limits(normal, normal)) == Limits(expected, expected)


def test_a_backoff_decided_elsewhere_is_adopted_with_a_fresh_window() -> None:
    tracker = BackoffTracker()
    prog = program()
    feed(tracker, prog, [D] * 5 + [OK] * 4)  # 9 attempts: one short of a trigger
    decided = Backoff(began_at=T0 + 20, ends_at=T0 + 620)
    tracker.adopt(decided, prog)
    assert tracker.current(T0 + 21) == decided
    assert tracker.limits(None, NORMAL, T0 + 21) == reduced_limits(prog, NORMAL)
    assert tracker.rates(T0 + 21) == (0, 0.0, 0.0)  # the evidence went with it
    assert tracker.current(T0 + 620) is None
