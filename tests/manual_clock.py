"""A clock for tests that moves only when told to (the engine takes any ``Clock``,
vmta.domain.clock): time-dependent behaviour is driven by ``advance``, never by sleeps."""

from __future__ import annotations

import asyncio


class ManualClock:
    """``sleep`` waits until ``advance`` has moved time past the sleeper's deadline."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._changed = asyncio.Event()

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        deadline = self._now + max(0.0, seconds)
        while self._now < deadline:
            self._changed.clear()
            await self._changed.wait()

    def advance(self, seconds: float) -> None:
        self._now += seconds
        self._changed.set()
