"""The console's readings, shared for a moment: every open console tab asks for its page
every few seconds, and the queue summary and the rates each scan a table. Within
``ttl`` seconds, every tab gets the same reading, so the database work does not grow with
the number of operators watching."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any


class ReadingsCache:
    def __init__(self, ttl: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._found: dict[Hashable, tuple[float, Any]] = {}
        self._locks: dict[Hashable, asyncio.Lock] = {}

    async def get(self, key: Hashable, read: Callable[[], Awaitable[Any]]) -> Any:
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # one reading at a time per key; the others wait for it
            hit = self._found.get(key)
            now = self._clock()
            if hit is not None and now - hit[0] < self.ttl:
                return hit[1]
            value = await read()
            self._found[key] = (self._clock(), value)
            return value
