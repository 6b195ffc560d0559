"""The ready queue of one egress path: deliveries waiting for a connection of that path,
and what the path has learnt about its destination (ARCHITECTURE.md: "ready queue per
egress path").

A path that keeps failing is delayed as a whole: after ``failures_before_delay``
consecutive connection or session failures (each one over the path's whole host list),
every delivery waiting on it is deferred with one attempt each, and only one probing
connection is tried again after ``delay``. This is KumoMTA's
``consecutive_connection_failures_before_delay``: a dead destination costs a few
connections per delay, not thousands a second.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from vmta.delivery.routing.router import Deliver
from vmta.domain.clock import Clock
from vmta.domain.delivery_outcome import ReplyLine
from vmta.domain.egress_path import EgressPath
from vmta.domain.spool_records import Job


@dataclass
class Delivery:
    """One message for one path: all its recipients that go the same way."""

    jobs: list[Job]
    decision: Deliver

    @property
    def first(self) -> Job:
        return self.jobs[0]


class ConnectionRate:
    """At most ``per_second`` new connections a second, in a token bucket that holds one
    second's worth (a burst of that many, then steady)."""

    def __init__(self, per_second: float, now: float) -> None:
        self.per_second = per_second
        self._tokens = max(1.0, per_second)
        self._at = now

    def _refill(self, now: float) -> None:
        if self.per_second <= 0:
            return
        capacity = max(1.0, self.per_second)
        self._tokens = min(capacity, self._tokens + (now - self._at) * self.per_second)
        self._at = now

    def delay(self, now: float) -> float:
        """Seconds until a connection may be opened (0: now)."""
        if self.per_second <= 0:
            return 0.0
        self._refill(now)
        return 0.0 if self._tokens >= 1.0 else (1.0 - self._tokens) / self.per_second

    def take(self, now: float) -> None:
        if self.per_second > 0:
            self._refill(now)
            self._tokens -= 1.0


class PathQueue:
    def __init__(self, path: EgressPath, rate: ConnectionRate) -> None:
        self.path = path  # the newest configuration of the path (limits, credentials, MX)
        self.rate = rate
        self.waiting: deque[Delivery] = deque()
        self.changed = asyncio.Event()
        self.connections = 0  # opening or open
        self.idle = 0  # open and waiting for a delivery
        self.consecutive_failures = 0
        self.last_failure_at = 0.0
        self.delayed_until = 0.0  # no connection before this (the path keeps failing)
        self.delay_reply: ReplyLine | None = None
        self.delay_permanent = False  # the failure was for good (a mail loop): fail, not defer
        self.delay_peer: tuple[str | None, str | None] | None = None  # who refused, if any
        self.probing = False  # one connection tries a delayed path again
        self.pumping = False
        self.pump_again = False
        self.wake_at: float | None = None
        self.timer: asyncio.Task[None] | None = None
        self.stopping = False  # the engine stops: idle connections end at once

    @property
    def throttle(self) -> str:
        return "/".join(self.path.throttle_key)

    def push(self, delivery: Delivery) -> None:
        self.waiting.append(delivery)
        self.changed.set()

    def wants_connection(self) -> bool:
        """More deliveries wait than idle connections could take."""
        return len(self.waiting) > self.idle

    def delayed(self, now: float) -> bool:
        return self.delayed_until > now

    def connection_failed(self, threshold: int, now: float, delay: float, reply: ReplyLine) -> bool:
        """Count a failure; True when it delays the path (the threshold is reached, or a
        probe of a delayed path failed)."""
        self.consecutive_failures += 1
        self.last_failure_at = now
        self.probing = False
        if self.consecutive_failures < threshold:
            return False
        self.delayed_until = now + delay
        self.delay_reply = reply
        return True

    def connection_worked(self) -> None:
        self.consecutive_failures = 0
        self.probing = False
        self.delayed_until = 0.0
        self.delay_reply = None
        self.delay_permanent = False
        self.delay_peer = None

    def forgettable(self, now: float, failure_memory: float) -> bool:
        """Nothing waits and nothing is open; and if the path has been failing, it has
        not failed for ``failure_memory`` seconds (kept until then, so that the retries
        of what it deferred meet a delayed path, not a fresh one that tries again)."""
        if self.waiting or self.connections or self.delayed(now):
            return False
        return not self.consecutive_failures or now - self.last_failure_at >= failure_memory

    def remember_until(self, failure_memory: float) -> float:
        return self.last_failure_at + failure_memory

    async def next(self, clock: Clock, idle_timeout: float) -> Delivery | None:
        """The next delivery, waiting up to ``idle_timeout`` for one to arrive. A push
        wakes every idle connection and one of them takes the delivery; the others wait
        on for the rest of their idle time (closing them would cost a new connection for
        the next delivery: with a site's many domains, one every few milliseconds)."""
        if self.waiting:
            return self.waiting.popleft()
        self.idle += 1
        # The idle wait uses the real event, bounded by the clock's sleep, so that a
        # manual clock in tests can end it as well.
        sleeper = asyncio.ensure_future(clock.sleep(idle_timeout))
        try:
            while not self.waiting and not self.stopping and not sleeper.done():
                self.changed.clear()
                waiter = asyncio.ensure_future(self.changed.wait())
                try:
                    await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
        finally:
            self.idle -= 1
            sleeper.cancel()
        return self.waiting.popleft() if self.waiting else None
