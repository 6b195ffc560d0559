"""Where throttle state lives: connection slots and message pacing, keyed by throttle.

The engine asks a backend two questions before it opens a connection or sends a message:
may one more connection to this throttle be open (``acquire_connection``), and may one more
message go now (``reserve_message``). ``LocalThrottles`` answers from this process's memory
(one node). A shared backend (Redis) answers for the whole cluster, so that limits hold
summed over every node.

Pacing is even spacing (the generic cell rate algorithm with no burst): a limit of M
messages an hour lets one message go every 3600/M seconds. With at least that gap between
any two sends, no 60-minute window holds more than M of them.
"""

from __future__ import annotations

import itertools
from typing import Protocol

from vmta.delivery.clock import Clock

HOUR = 3600.0


class ThrottleBackend(Protocol):
    async def acquire_connection(self, key: str, limit: int) -> str | None:
        """Take one of ``limit`` connection slots of ``key``; None when all are taken.
        ``limit`` 0 means no limit. The token returned is given back to release."""
        ...

    async def release_connection(self, key: str, token: str) -> None: ...

    async def reserve_message(self, key: str, per_hour: int) -> float:
        """0.0: a send slot of ``key`` is taken for a message that goes now. Otherwise the
        seconds until the next slot; nothing is taken. ``per_hour`` 0 means no limit."""
        ...

    async def renew(self) -> None:
        """Keep this node's connection slots alive (a shared backend expires the slots of
        a node that stops renewing them)."""
        ...

    async def close(self) -> None: ...


class LocalThrottles:
    """Throttles of one node, in memory.

    After a restart the pacing of a key starts one interval after the first use, not at
    once: the last send before the restart may have been an instant ago, and waiting one
    interval keeps the spacing without having to remember it.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._open: dict[str, set[str]] = {}
        self._next_slot: dict[str, float] = {}
        self._tokens = itertools.count(1)
        self._started = clock.now()

    async def acquire_connection(self, key: str, limit: int) -> str | None:
        held = self._open.setdefault(key, set())
        if limit and len(held) >= limit:
            return None
        token = str(next(self._tokens))
        held.add(token)
        return token

    async def release_connection(self, key: str, token: str) -> None:
        held = self._open.get(key)
        if held is not None:
            held.discard(token)
            if not held:
                del self._open[key]

    async def reserve_message(self, key: str, per_hour: int) -> float:
        if not per_hour:
            return 0.0
        interval = HOUR / per_hour
        now = self._clock.now()
        slot = self._next_slot.get(key)
        if slot is None:
            slot = self._started + interval  # see the class docstring
        if slot > now:
            return slot - now
        self._next_slot[key] = now + interval
        return 0.0

    def open_connections(self, key: str) -> int:
        return len(self._open.get(key, ()))

    def forget(self, key: str) -> None:
        """Drop the pacing of an idle key whose next slot has passed (nothing left to
        enforce), so that per-domain keys do not grow without bound."""
        slot = self._next_slot.get(key)
        if slot is not None and slot <= self._clock.now() and not self._open.get(key):
            del self._next_slot[key]

    async def renew(self) -> None:
        return None

    async def close(self) -> None:
        return None
