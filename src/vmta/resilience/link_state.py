"""The state of vmta's link to a service it depends on (a RabbitMQ destination, the
outbox consumer): up, or down since when and why, and how many times it was lost. Shown
by ``GET /api/events`` and ``/api/health``; its changes are what gets logged, so that an
outage of an hour is two log lines, not one per retry."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

UP, DOWN, CONNECTING = "up", "down", "connecting"

# Reconnect attempts to a lost service start at INITIAL seconds apart and double, up to
# LONGEST: a broker back after a deploy is used again within that long.
INITIAL_RETRY = 0.5
LONGEST_RETRY = 30.0


@dataclass
class LinkState:
    name: str
    now: Callable[[], float] = field(default=time.time, repr=False)
    state: str = CONNECTING
    since: float = 0.0
    last_error: str | None = None
    last_error_at: float | None = None
    losses: int = 0  # times an established link was lost
    next_retry_at: float | None = None

    def __post_init__(self) -> None:
        self.since = self.now()

    def connected(self) -> bool:
        """The link works; True when it did not before (worth a log line)."""
        changed = self.state != UP
        if changed:
            self.state, self.since = UP, self.now()
        self.next_retry_at = None
        return changed

    def lost(self, reason: str, retry_in: float) -> bool:
        """The link failed (or could not be made); True when it worked before or failed
        for another reason (worth a log line)."""
        now = self.now()
        changed = self.state != DOWN or reason != self.last_error
        if self.state == UP:
            self.losses += 1
        if self.state != DOWN:
            self.state, self.since = DOWN, now
        self.last_error, self.last_error_at = reason, now
        self.next_retry_at = now + retry_in
        return changed

    def report(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "since": self.since,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "losses": self.losses,
            "next_retry_at": self.next_retry_at,
        }


def next_delay(delay: float, longest: float = LONGEST_RETRY) -> float:
    """The wait after ``delay``: doubled, never past ``longest``."""
    return min(delay * 2, longest)
