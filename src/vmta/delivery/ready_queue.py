"""The ready queue of one egress path: deliveries waiting for a connection of that path
(ARCHITECTURE.md: "ready queue per egress path")."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from vmta.delivery.clock import Clock
from vmta.delivery.path import EgressPath
from vmta.delivery.router import Deliver
from vmta.delivery.throttle import ConnectionLimiter, MessagePacer
from vmta.domain.spool_records import Job


@dataclass
class Delivery:
    """One message for one path: all its recipients that go the same way."""

    jobs: list[Job]
    decision: Deliver

    @property
    def first(self) -> Job:
        return self.jobs[0]


class PathQueue:
    def __init__(self, path: EgressPath, limiter: ConnectionLimiter, pacer: MessagePacer) -> None:
        self.path = path
        self.limiter = limiter
        self.pacer = pacer
        self.waiting: deque[Delivery] = deque()
        self.changed = asyncio.Event()
        self.connections = 0

    def push(self, delivery: Delivery) -> None:
        self.waiting.append(delivery)
        self.changed.set()

    async def next(self, clock: Clock, idle_timeout: float) -> Delivery | None:
        """The next delivery, waiting up to ``idle_timeout`` for one to arrive."""
        if self.waiting:
            return self.waiting.popleft()
        self.changed.clear()
        # The idle wait uses the real event, bounded by the clock's sleep, so that a
        # manual clock in tests can end it as well.
        sleeper = asyncio.ensure_future(clock.sleep(idle_timeout))
        waiter = asyncio.ensure_future(self.changed.wait())
        try:
            await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waiter.cancel()
        return self.waiting.popleft() if self.waiting else None
