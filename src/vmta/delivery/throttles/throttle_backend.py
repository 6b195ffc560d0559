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
import json
import os
from pathlib import Path
from typing import Protocol

from vmta.domain.clock import Clock

HOUR = 3600.0
# A want of a connection slot (``yield_to_waiter``) counts this long: a process or node
# that waits for a slot asks again every second (the dispatcher's ``shared_retry``) and
# notes its want each time.
WANT_FRESH = 2.0


class ThrottleBackend(Protocol):
    async def acquire_connection(self, key: str, limit: int) -> str | None:
        """Take one of ``limit`` connection slots of ``key``; None when all are taken.
        ``limit`` 0 means no limit. The token returned is given back to release."""
        ...

    async def release_connection(self, key: str, token: str) -> None: ...

    async def yield_to_waiter(self, key: str) -> bool:
        """Whether a connection of ``key`` that has nothing to carry should close now
        rather than stay idle: another process or node found every slot taken a moment
        ago and holds at least two fewer than this one (slots move to where the mail
        is; a shared backend only)."""
        ...

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
    """Throttles of one node, in memory, with the pacing remembered in a small file.

    Each message slot taken is appended to ``memory`` (one line, no fsync: like the
    in-flight journal it only has to survive the process, and written data is in the page
    cache), so that a restarted node continues the spacing instead of sending at once
    what the limit had held back.
    """

    MAX_MEMORY_BYTES = 1024 * 1024  # past this the file is rewritten with what still counts

    def __init__(self, clock: Clock, memory: Path | None = None) -> None:
        self._clock = clock
        self._open: dict[str, set[str]] = {}
        self._next_slot: dict[str, float] = {}
        self._tokens = itertools.count(1)
        self._memory = memory
        self._fd: int | None = None
        self._size = 0
        if memory is not None:
            self._next_slot = _read_slots(memory)
            self._rewrite()

    def _rewrite(self) -> None:
        assert self._memory is not None
        if self._fd is not None:
            os.close(self._fd)
        now = self._clock.now()
        live = {key: slot for key, slot in self._next_slot.items() if slot > now}
        text = "".join(json.dumps([key, slot]) + "\n" for key, slot in live.items())
        tmp = self._memory.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.chmod(tmp, 0o600)
        os.replace(tmp, self._memory)
        self._fd = os.open(self._memory, os.O_WRONLY | os.O_APPEND)
        self._size = len(text)

    def _remember(self, key: str, slot: float) -> None:
        if self._fd is None:
            return
        line = (json.dumps([key, slot]) + "\n").encode()
        os.write(self._fd, line)
        self._size += len(line)
        if self._size > self.MAX_MEMORY_BYTES:
            self._rewrite()

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

    async def yield_to_waiter(self, key: str) -> bool:
        return False  # one process: no one else to give a slot to

    async def reserve_message(self, key: str, per_hour: int) -> float:
        if not per_hour:
            return 0.0
        interval = HOUR / per_hour
        now = self._clock.now()
        slot = self._next_slot.get(key)
        if slot is not None and slot > now:
            return slot - now
        self._next_slot[key] = now + interval
        self._remember(key, now + interval)
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
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _read_slots(path: Path) -> dict[str, float]:
    """The latest slot of each key in the pacing memory (a torn last line is skipped)."""
    slots: dict[str, float] = {}
    if not path.exists():
        return slots
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            key, slot = json.loads(line)
            slots[str(key)] = max(float(slot), slots.get(str(key), 0.0))
        except (ValueError, TypeError):
            continue
    return slots
