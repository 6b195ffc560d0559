"""The per-node registry of throttle backoff, on a manual clock."""

from __future__ import annotations

from tests.manual_clock import ManualClock
from vmta.delivery.throttles.throttle_backoffs import ThrottleBackoffs
from vmta.domain.config.bounds import MAX_INTEGER
from vmta.domain.config.virtual_mta import Limits
from vmta.domain.limits.throttle_identity import ThrottleOrigin, throttle_id
from vmta.domain.limits.throttle_program import (
    BackoffLimits,
    BackoffMode,
    BackoffValue,
    ThrottleProgram,
)

PROGRAM = ThrottleProgram(
    name="p",
    backoff=BackoffLimits(
        BackoffValue(BackoffMode.FIXED, 1), BackoffValue(BackoffMode.PERCENT, 50)
    ),
    return_after=600,
    deferral_rate=50,
)
NORMAL = Limits(4, 100)
KEY = ("ip", "127.0.0.2", "domain", "a.test")
OTHER = ("ip", "127.0.0.2", "domain", "b.test")
ORIGIN = ThrottleOrigin(7, "ip-1", "ip_address", 41, 7, "ip-1", ("a.test",), NORMAL)


def test_observe_limits_list_and_end() -> None:
    clock = ManualClock()
    registry = ThrottleBackoffs(min_attempts=4)
    for _ in range(3):
        registry.observe(KEY, PROGRAM, "deferred", clock.now(), origin=ORIGIN)
        registry.observe(OTHER, PROGRAM, "delivered", clock.now())
        clock.advance(1)
    assert registry.in_backoff(clock.now()) == []
    started = registry.observe(KEY, PROGRAM, "deferred", clock.now(), origin=ORIGIN)
    assert started is not None and started.ends_at == clock.now() + 600
    assert registry.limits(KEY, NORMAL, clock.now()) == Limits(1, 50)
    assert registry.limits(OTHER, NORMAL, clock.now()) == NORMAL
    [state] = registry.in_backoff(clock.now())
    assert state.key == KEY and state.origin == ORIGIN and state.limits == Limits(1, 50)
    assert [s.key for s in registry.of_ip_address(7, clock.now())] == [KEY]

    assert registry.end_backoff(KEY) is True
    assert registry.limits(KEY, NORMAL, clock.now()) == NORMAL
    assert registry.in_backoff(clock.now()) == [] and registry.end_backoff(KEY) is False


def test_return_after_restores_the_normal_limits() -> None:
    clock = ManualClock()
    registry = ThrottleBackoffs(min_attempts=2)
    registry.observe(KEY, PROGRAM, "deferred", clock.now())
    registry.observe(KEY, PROGRAM, "failed", clock.now())
    registry.observe(KEY, PROGRAM, "deferred", clock.now())
    assert registry.limits(KEY, NORMAL, clock.now()) == Limits(1, 50)
    clock.advance(600)
    assert registry.limits(KEY, NORMAL, clock.now()) == NORMAL
    assert registry.in_backoff(clock.now()) == []


def test_ids_are_stable_and_holds_are_ignored() -> None:
    registry = ThrottleBackoffs()
    assert registry.observe(KEY, None, "deferred", 0.0) is None  # no program: nothing kept
    registry.observe(KEY, PROGRAM, "waiting", 0.0)
    first = registry.state(KEY, 0.0).id
    second = registry.state(OTHER, 0.0).id
    assert first != second and registry.state(KEY, 1.0).id == first


def test_ids_are_the_same_on_every_node_and_bounded() -> None:
    one, other = ThrottleBackoffs(), ThrottleBackoffs()
    other.state(OTHER, 0.0)  # created in another order
    assert one.state(KEY, 0.0).id == other.state(KEY, 0.0).id == throttle_id(KEY)
    assert 1 <= throttle_id(KEY) <= MAX_INTEGER and throttle_id(KEY) != throttle_id(OTHER)


def test_a_colliding_id_takes_the_next_free_one() -> None:
    registry = ThrottleBackoffs()
    registry._taken.add(throttle_id(KEY))  # as if another key had landed on it
    assert registry.state(KEY, 0.0).id == throttle_id(KEY) % MAX_INTEGER + 1
