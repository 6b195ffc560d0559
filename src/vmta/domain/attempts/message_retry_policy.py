"""A message's own retry rules (MailerQ ``maxattempts``, ``maxdelivertime``, ``retries``,
``nextattempt``) over vmta's default schedule: when a deferred recipient is tried again,
or that it is given up.

- ``maxattempts`` (> 0): after that many attempts, the recipient fails.
- ``retries``: the delay after the n-th failed attempt is ``retries[n-1]``; past the end
  of the list the last delay repeats (as vmta's own schedule does). Without it, the
  default schedule's delays apply.
- ``maxdelivertime``: no attempt at or after that time; it replaces the default lifetime
  (a message may ask for a shorter or a longer one). Without it, the default lifetime
  from arrival and the message's ``expires_at`` bound the retries.
- ``nextattempt``: the earliest time of the first attempt (``first_attempt_wait``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vmta.domain.attempts.retry_schedule import RetrySchedule


@dataclass(frozen=True)
class RetryDecision:
    next_attempt_at: float | None  # None: give up
    reason: str | None = None  # why it gives up


def next_attempt(
    options: Mapping[str, Any] | None,
    *,
    attempts: int,
    received_at: float,
    expires_at: float,
    now: float,
    schedule: RetrySchedule,
) -> RetryDecision:
    """After a deferral that made ``attempts`` attempts in all (this one included)."""
    options = options or {}
    limit = options.get("maxattempts")
    if isinstance(limit, int) and limit > 0 and attempts >= limit:
        return RetryDecision(None, f"giving up after {attempts} attempt(s): maxattempts {limit}")
    retries = options.get("retries")
    if isinstance(retries, list) and retries:
        delay = float(retries[min(max(attempts, 1), len(retries)) - 1])
    else:
        delay = schedule.delay_after(attempts)
    at = now + delay
    deadline = options.get("maxdelivertime")
    if isinstance(deadline, int | float):
        if at >= deadline:
            return RetryDecision(
                None, f"giving up after {attempts} attempt(s): maxdelivertime reached"
            )
        return RetryDecision(at)
    if at - received_at >= schedule.max_lifetime or at >= expires_at:
        return RetryDecision(None, f"giving up: message expired after {attempts} attempt(s)")
    return RetryDecision(at)


def first_attempt_wait(options: Mapping[str, Any] | None, attempts: int, now: float) -> float:
    """Seconds to wait before the first attempt (``nextattempt`` in the future); 0 once
    an attempt has been made or when the message asks for no delay."""
    if attempts or not options:
        return 0.0
    when = options.get("nextattempt")
    if isinstance(when, int | float) and when > now:
        return float(when) - now
    return 0.0


def lifetime_end(options: Mapping[str, Any] | None, default: float) -> float:
    """The message's ``expires_at``: its ``maxdelivertime`` when it gives one."""
    deadline = (options or {}).get("maxdelivertime")
    return float(deadline) if isinstance(deadline, int | float) else default
