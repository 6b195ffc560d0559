"""Throttles of one egress path or VirtualMTA: connections at once, messages per hour.

Limits are read at every acquisition (through ``limits()``), so a change made through the
API applies to the next connection or message without a restart. 0 means unlimited.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from vmta.delivery.clock import Clock
from vmta.domain.virtual_mta import Limits

HOUR = 3600.0


class ConnectionLimiter:
    """Counts open connections; never lets more than the limit be open at once."""

    def __init__(self, limits: Callable[[], Limits], fallback: int = 0) -> None:
        self._limits = limits
        self._fallback = fallback  # cap used when the configured limit is 0 (unlimited)
        self.open = 0
        self.peak = 0

    def try_acquire(self) -> bool:
        limit = self._limits().max_concurrent_connections or self._fallback
        if limit and self.open >= limit:
            return False
        self.open += 1
        self.peak = max(self.peak, self.open)
        return True

    def release(self) -> None:
        self.open = max(0, self.open - 1)


class MessagePacer:
    """Spaces messages evenly: one every 3600/M seconds for a limit of M per hour.

    Even spacing is what makes the limit exact: with at least 3600/M seconds between any
    two sends, no 60-minute window (half-open) can hold more than M of them, and a backlog
    drains steadily instead of in a burst at the top of each hour.
    """

    def __init__(self, limits: Callable[[], Limits], clock: Clock) -> None:
        self._limits = limits
        self._clock = clock
        self._next_slot: float | None = None
        self._lock = asyncio.Lock()
        self.sent = 0

    def seed(self, last_send: float | None) -> None:
        """Continue the spacing from a send made before a restart."""
        limit = self._limits().max_messages_per_hour
        if last_send is not None and limit:
            self._next_slot = last_send + HOUR / limit

    def delay(self) -> float:
        """Seconds until the next message may go (0 when it may go now)."""
        limit = self._limits().max_messages_per_hour
        if not limit or self._next_slot is None:
            return 0.0
        return max(0.0, self._next_slot - self._clock.now())

    async def acquire(self) -> None:
        """Wait for this path's next slot and take it."""
        async with self._lock:
            while True:
                wait = self.delay()
                if wait <= 0:
                    break
                await self._clock.sleep(wait)
            limit = self._limits().max_messages_per_hour
            now = self._clock.now()
            self._next_slot = now + HOUR / limit if limit else None
            self.sent += 1
