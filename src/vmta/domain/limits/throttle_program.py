"""Throttle programs: GreenArrow's Dynamic Delivery settings.

A program says when a throttle goes into *backoff* (``triggers``: the share of recent
attempts that failed or were deferred) and what its limits are then (``backoff``: a
percentage of the normal limit, or a fixed value) for how long (``return_after``
seconds). How the rates are measured is ``vmta.domain.limits.throttle_backoff``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class BackoffMode(StrEnum):
    PERCENT = "percent"  # ``value`` percent of the normal limit
    FIXED = "fixed"  # ``value`` itself


@dataclass(frozen=True)
class BackoffValue:
    mode: BackoffMode
    value: int  # > 0

    def applied_to(self, normal: int) -> int:
        """The limit in backoff, given the normal one (0 = unlimited).

        A percentage of a limit is rounded down but never below 1: backoff slows a
        destination down, it never stops it. A percentage of "unlimited" has nothing to
        scale, so it stays unlimited; a fixed value applies whatever the normal limit,
        but never raises a limit above the normal one."""
        if self.mode is BackoffMode.PERCENT:
            if normal == 0:
                return 0
            return min(normal, max(1, normal * self.value // 100))
        if normal == 0:
            return self.value
        return min(normal, self.value)


@dataclass(frozen=True)
class BackoffLimits:
    max_concurrent_connections: BackoffValue
    max_messages_per_hour: BackoffValue


@dataclass(frozen=True)
class ThrottleProgram:
    name: str
    backoff: BackoffLimits
    return_after: int  # seconds in backoff once it begins
    failure_rate: int | None = None  # percent of recent attempts that failed, 1-100
    deferral_rate: int | None = None  # percent of recent attempts deferred, 1-100
    notify: str | None = None  # accepted and stored; vmta sends no notification mail
    builtin: bool = False
    id: int | None = None
