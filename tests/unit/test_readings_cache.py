"""The console's shared readings: one database reading per key and moment, however many
tabs ask at once; a fresh one once the moment has passed."""

from __future__ import annotations

import asyncio

from vmta.api.console.readings_cache import ReadingsCache


async def test_tabs_asking_together_share_one_reading_until_it_is_stale() -> None:
    now = [100.0]
    cache = ReadingsCache(ttl=2.0, clock=lambda: now[0])
    reads: list[str] = []

    async def read() -> str:
        reads.append("read")
        await asyncio.sleep(0)  # others ask meanwhile
        return f"reading {len(reads)}"

    answers = await asyncio.gather(*(cache.get("queue", read) for _ in range(5)))
    assert answers == ["reading 1"] * 5 and len(reads) == 1
    now[0] += 1.9
    assert await cache.get("queue", read) == "reading 1"
    assert await cache.get("rates", read) == "reading 2"  # another key, its own reading
    now[0] += 0.2
    assert await cache.get("queue", read) == "reading 3"  # stale: read again
