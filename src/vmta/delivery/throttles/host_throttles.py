"""Throttles shared by the processes of one host (``VMTA_WORKERS`` > 1 without Redis).

Every process of one vmta on one machine must respect one ``max_concurrent_connections``
and one ``max_messages_per_hour`` per throttle, summed over the processes. The state lives
in small files under the data directory, one per throttle key, guarded by POSIX record
locks (fcntl(2), F_SETLK):

- A connection slot is an exclusive lock on one byte of the key's file: slot i is byte i.
  Taking a slot tries the bytes 0 .. limit-1 without waiting. The kernel drops a process's
  locks when it exits, however it exits (kill -9 included), so a dead worker never keeps
  slots, and nothing has to expire them.
- Pacing is the generic cell rate algorithm without burst, as in ``LocalThrottles``: the
  time of the next free send slot is a double at the start of the key's file, read and
  written under an exclusive lock of a byte far past the slot bytes. The file is in the
  page cache, so a restarted process continues the spacing (no fsync is needed: it has to
  survive processes, not the machine).
- Slots move to where the mail is. A process that finds every slot taken notes so in the
  file (when, who, and how many slots it holds itself). A process holding at least two
  more slots than that one gives a slot up when its connection has nothing to send,
  rather than keep it idle for the idle timeout: otherwise the process that drained its
  own queue first keeps most of the limit while the other's backlog goes through a few
  connections (docs/PERFORMANCE.md, round 7). Processes with equal shares (give or take
  one) keep theirs, so connections are not closed and opened back and forth.

POSIX record locks belong to the process, not to the file descriptor, so two slots of one
process never conflict with each other: the process keeps its own set of taken slots and
skips them. Closing any descriptor of a file drops every lock the process holds on it,
so each key's file is opened once and closed only when the process holds nothing there.
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import os
import secrets
import struct
from dataclasses import dataclass, field
from pathlib import Path

from vmta.delivery.throttles.throttle_backend import WANT_FRESH
from vmta.domain.clock import Clock

HOUR = 3600.0
PACING_LOCK = 1 << 40  # a byte offset no connection limit reaches
_DOUBLE = struct.Struct("<d")
# The last want of a slot, after the pacing double: when (clock seconds), who (a process's
# random identity) and how many slots that process held then.
WANT_AT = _DOUBLE.size
_WANT = struct.Struct("<dqq")


@dataclass
class _KeyFile:
    fd: int
    slots: set[int] = field(default_factory=set)  # slot bytes this process holds
    unlimited: set[str] = field(default_factory=set)  # tokens of limit-0 connections


class HostThrottles:
    """A ``ThrottleBackend`` whose limits hold summed over every process of this host
    that uses the same ``directory``."""

    def __init__(self, clock: Clock, directory: Path) -> None:
        self._clock = clock
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._files: dict[str, _KeyFile] = {}
        self._tokens = itertools.count(1)
        # Whose want a record is; not the pid, which two instances in one process share.
        self._identity = secrets.randbits(62)

    def _file(self, key: str) -> _KeyFile:
        found = self._files.get(key)
        if found is None:
            name = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
            fd = os.open(self.directory / name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            found = self._files[key] = _KeyFile(fd)
        return found

    async def acquire_connection(self, key: str, limit: int) -> str | None:
        entry = self._file(key)
        if not limit:
            token = f"u{next(self._tokens)}"
            entry.unlimited.add(token)
            return token
        for slot in range(limit):
            if slot in entry.slots:
                continue
            try:
                fcntl.lockf(entry.fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, slot)
            except OSError:  # EAGAIN or EACCES: another process holds this slot
                continue
            entry.slots.add(slot)
            return str(slot)
        # Every slot is taken: say so, for a process that holds more than its share.
        # No lock: a write of 24 bytes that a reader could see half done at worst makes
        # one idle connection stay or go once for the wrong reason.
        want = _WANT.pack(self._clock.now(), self._identity, len(entry.slots))
        os.pwrite(entry.fd, want, WANT_AT)
        return None

    async def yield_to_waiter(self, key: str) -> bool:
        """Whether this process should give up a slot of ``key`` that has nothing to
        carry: another process found every slot taken within ``WANT_FRESH`` seconds and
        held at least two fewer than this one holds now."""
        entry = self._files.get(key)
        if entry is None or len(entry.slots) < 2:
            return False
        raw = os.pread(entry.fd, _WANT.size, WANT_AT)
        if len(raw) < _WANT.size:
            return False
        at, who, held = _WANT.unpack(raw)
        if who == self._identity or self._clock.now() - at > WANT_FRESH:
            return False
        return len(entry.slots) >= int(held) + 2

    async def release_connection(self, key: str, token: str) -> None:
        entry = self._files.get(key)
        if entry is None:
            return
        if token.startswith("u"):
            entry.unlimited.discard(token)
            return
        slot = int(token)
        if slot in entry.slots:
            fcntl.lockf(entry.fd, fcntl.LOCK_UN, 1, slot)
            entry.slots.discard(slot)

    async def reserve_message(self, key: str, per_hour: int) -> float:
        if not per_hour:
            return 0.0
        entry = self._file(key)
        interval = HOUR / per_hour
        # Held for a read and a write of 8 bytes: the wait for another process is short.
        fcntl.lockf(entry.fd, fcntl.LOCK_EX, 1, PACING_LOCK)
        try:
            raw = os.pread(entry.fd, _DOUBLE.size, 0)
            slot = _DOUBLE.unpack(raw)[0] if len(raw) == _DOUBLE.size else 0.0
            now = self._clock.now()
            if slot > now:
                return slot - now
            os.pwrite(entry.fd, _DOUBLE.pack(now + interval), 0)
            return 0.0
        finally:
            fcntl.lockf(entry.fd, fcntl.LOCK_UN, 1, PACING_LOCK)

    def open_connections(self, key: str) -> int:
        """Connections this process holds for ``key``."""
        entry = self._files.get(key)
        return 0 if entry is None else len(entry.slots) + len(entry.unlimited)

    def forget(self, key: str) -> None:
        """Close an idle key's file (its pacing stays in the file for the next use)."""
        entry = self._files.get(key)
        if entry is not None and not entry.slots and not entry.unlimited:
            os.close(entry.fd)
            del self._files[key]

    async def renew(self) -> None:
        return None

    async def close(self) -> None:
        for entry in self._files.values():
            os.close(entry.fd)  # drops this process's slots
        self._files.clear()
