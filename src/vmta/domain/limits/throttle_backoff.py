"""Dynamic Delivery for one throttle: measure, decide, reduce.

A ``BackoffTracker`` is fed the outcome of every delivery attempt made through one
throttle (``observe``) and answers which limits apply now (``limits``). It is pure: time
is always passed in, so it runs on any clock.

How vmta measures (the choices GreenArrow leaves to the MTA):

- **Window.** Rates are over the attempts of the last ``WINDOW_SECONDS`` (300 s, the
  granularity GreenArrow rounds ``return_after`` to). Older attempts are forgotten.
- **Minimum evidence.** A trigger fires only once the window holds at least
  ``MIN_ATTEMPTS`` (10) attempts, so that two deferrals out of three never slow a
  destination down.
- **Rates.** ``failure_rate`` is the percentage of attempts in the window that failed
  (5xx), ``deferral_rate`` the percentage deferred (4xx, 421, connection trouble). A
  trigger fires when its rate reaches (>=) the program's value. Either trigger suffices.
- **Backoff.** When a trigger fires, the throttle's limits become the program's
  ``backoff`` limits (``percent`` of the normal limit or ``fixed``, see
  ``BackoffValue.applied_to``) until ``return_after`` seconds have passed, or until
  backoff is ended by hand. Outcomes seen during backoff do not extend it; the window
  starts empty when backoff begins and again when it ends, so returning to normal
  needs fresh evidence before the next backoff.
- **Shared backoff.** In a cluster another node may put the throttle into backoff
  (``adopt``) or end it (``end``); the tracker then behaves as if it had decided so
  itself: its window starts empty either way.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import StrEnum

from vmta.domain.config.virtual_mta import Limits
from vmta.domain.limits.throttle_program import ThrottleProgram

WINDOW_SECONDS = 300.0
MIN_ATTEMPTS = 10
BACKOFF_REASON = "throttle_program"  # GreenArrow's backoff_reason for this cause


class AttemptOutcome(StrEnum):
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    FAILED = "failed"


@dataclass(frozen=True)
class Backoff:
    """A throttle in backoff: since when, until when, and why."""

    began_at: float
    ends_at: float
    reason: str = BACKOFF_REASON


def reduced_limits(program: ThrottleProgram, normal: Limits) -> Limits:
    """The limits of a throttle in backoff under ``program``."""
    return Limits(
        max_concurrent_connections=program.backoff.max_concurrent_connections.applied_to(
            normal.max_concurrent_connections
        ),
        max_messages_per_hour=program.backoff.max_messages_per_hour.applied_to(
            normal.max_messages_per_hour
        ),
    )


class BackoffTracker:
    """The recent outcomes of one throttle, and whether it is in backoff."""

    def __init__(self, *, window: float = WINDOW_SECONDS, min_attempts: int = MIN_ATTEMPTS) -> None:
        self.window = window
        self.min_attempts = min_attempts
        self._events: deque[tuple[float, AttemptOutcome]] = deque()
        self._counts = {outcome: 0 for outcome in AttemptOutcome}
        self.backoff: Backoff | None = None
        self.program: ThrottleProgram | None = None  # the program of the last backoff

    # ---- reading ---------------------------------------------------------------------

    def current(self, now: float) -> Backoff | None:
        """The backoff in force at ``now``; one whose time is up has ended."""
        if self.backoff is not None and now >= self.backoff.ends_at:
            self._end()
        return self.backoff

    def limits(self, program: ThrottleProgram | None, normal: Limits, now: float) -> Limits:
        """The limits that apply at ``now``: ``normal``, or the reduced ones in backoff.
        The program of the backoff in force is used when ``program`` is None (the rule
        lost its program while in backoff: the backoff still runs its course)."""
        if self.current(now) is None:
            return normal
        chosen = program or self.program
        return normal if chosen is None else reduced_limits(chosen, normal)

    def rates(self, now: float) -> tuple[int, float, float]:
        """(attempts in the window, failure %, deferral %) at ``now``."""
        self._forget(now)
        total = len(self._events)
        if not total:
            return 0, 0.0, 0.0
        failed = self._counts[AttemptOutcome.FAILED] * 100.0 / total
        deferred = self._counts[AttemptOutcome.DEFERRED] * 100.0 / total
        return total, failed, deferred

    # ---- writing -----------------------------------------------------------------------

    def observe(
        self, program: ThrottleProgram | None, outcome: AttemptOutcome, now: float
    ) -> Backoff | None:
        """Count one attempt at ``now``; returns the Backoff when this one started it."""
        if program is None or self.current(now) is not None:
            return None
        self._events.append((now, outcome))
        self._counts[outcome] += 1
        total, failed, deferred = self.rates(now)
        if total < self.min_attempts or not _fires(program, failed, deferred):
            return None
        self.backoff = Backoff(began_at=now, ends_at=now + program.return_after)
        self.program = program
        self._clear()
        return self.backoff

    def adopt(self, backoff: Backoff, program: ThrottleProgram | None) -> None:
        """Be in ``backoff``, decided elsewhere (another node of the cluster), under
        ``program`` (None: the caller's program decides the reduced limits)."""
        if self.backoff != backoff:
            self._clear()
        self.backoff = backoff
        if program is not None:
            self.program = program

    def end(self) -> bool:
        """End backoff now (by hand); False when not in backoff."""
        if self.backoff is None:
            return False
        self._end()
        return True

    def _end(self) -> None:
        self.backoff = None
        self._clear()

    def _clear(self) -> None:
        self._events.clear()
        self._counts = {outcome: 0 for outcome in AttemptOutcome}

    def _forget(self, now: float) -> None:
        horizon = now - self.window
        while self._events and self._events[0][0] <= horizon:
            _, outcome = self._events.popleft()
            self._counts[outcome] -= 1


def _fires(program: ThrottleProgram, failed: float, deferred: float) -> bool:
    if program.failure_rate is not None and failed >= program.failure_rate:
        return True
    return program.deferral_rate is not None and deferred >= program.deferral_rate
