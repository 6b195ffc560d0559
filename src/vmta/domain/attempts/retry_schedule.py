"""When to try a deferred recipient again, and when to give up."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_BACKOFF = (60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0)
DEFAULT_MAX_LIFETIME = 2 * 24 * 3600.0  # 2 days


@dataclass(frozen=True)
class RetrySchedule:
    """Backoff after the n-th failed attempt is ``backoff[n-1]``; past the end of the list
    the last interval repeats. A message older than ``max_lifetime`` seconds fails."""

    backoff: Sequence[float] = DEFAULT_BACKOFF
    max_lifetime: float = DEFAULT_MAX_LIFETIME

    def __post_init__(self) -> None:
        if not self.backoff or any(step <= 0 for step in self.backoff):
            raise ValueError("backoff must be a non-empty list of positive seconds")
        if self.max_lifetime <= 0:
            raise ValueError("max_lifetime must be positive")

    def delay_after(self, attempts: int) -> float:
        index = min(max(attempts, 1), len(self.backoff)) - 1
        return float(self.backoff[index])

    def next_attempt(self, now: float, attempts: int) -> float:
        return now + self.delay_after(attempts)

    def expired(self, received_at: float, now: float) -> bool:
        return now - received_at >= self.max_lifetime
