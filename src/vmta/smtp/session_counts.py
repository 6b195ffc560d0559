"""SMTP session counts of the node, shared by the processes of ``VMTA_WORKERS``: the caps
(``VMTA_SMTP_MAX_SESSIONS``, ``..._PER_CLIENT``) and the stress threshold hold for the
node as a whole, not per process (two workers with a cap of 10 per client greeted 20
sessions from one address before).

The counts live in a small file under the data directory, mapped into every process
(mmap). Each process owns one region and writes only there: its number of sessions, and
its sessions per client address, kept in buckets by a CRC-32 of the address (two
addresses that share a bucket share its cap: with 16,384 buckets, rare, and never more
permissive). The node's count is the sum over the regions. An admission reads the sums and
counts itself in under a POSIX record lock (fcntl(2)) of one byte past the data, so that
two processes admitting at once cannot both take the last place; the lock is held for a
few reads and writes, and the kernel drops it if its holder dies. A process that dies
leaves its counts behind until it is started again (its sockets died with it): it zeroes
its region when it starts, and `vmta serve` (process 0) zeroes the whole file first.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BUCKETS = 16_384
_TOTAL = struct.Struct("<I")
_BUCKET = struct.Struct("<H")
HEADER = 8  # the region's session count, padded
REGION = HEADER + BUCKETS * _BUCKET.size
TOO_MANY, TOO_MANY_FROM_CLIENT = "sessions", "client"


class SharedSessionCounts:
    def __init__(self, path: Path, worker: int, workers: int) -> None:
        if not 0 <= worker < workers:
            raise ValueError(f"worker {worker} of {workers}")
        self.worker = worker
        self.workers = workers
        self._size = workers * REGION
        self._lock_offset = self._size + 1
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        self._own = worker * REGION
        self._clients: Counter[str] = Counter()  # this process's sessions per address
        with self._locked():
            if os.fstat(self._fd).st_size < self._size:
                os.ftruncate(self._fd, self._size)
            self._map = mmap.mmap(self._fd, self._size)
            if worker == 0:
                self._map[: self._size] = bytes(self._size)  # a new run of `vmta serve`
            else:
                self._map[self._own : self._own + REGION] = bytes(REGION)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fcntl.lockf(self._fd, fcntl.LOCK_EX, 1, self._lock_offset)
        try:
            yield
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, self._lock_offset)

    @staticmethod
    def _bucket(client: str) -> int:
        return zlib.crc32(client.encode("utf-8", "surrogateescape")) % BUCKETS

    def _bucket_offset(self, region: int, bucket: int) -> int:
        return region * REGION + HEADER + bucket * _BUCKET.size

    def total(self) -> int:
        """Sessions open on the node now (read without the lock: a stress check)."""
        return sum(_TOTAL.unpack_from(self._map, w * REGION)[0] for w in range(self.workers))

    def of_client(self, client: str) -> int:
        bucket = self._bucket(client)
        return sum(
            _BUCKET.unpack_from(self._map, self._bucket_offset(w, bucket))[0]
            for w in range(self.workers)
        )

    def admit(self, client: str, max_sessions: int, max_per_client: int) -> str | None:
        """Count a new session of ``client`` in, or say which cap it is over."""
        bucket = self._bucket(client)
        with self._locked():
            if self.total() >= max_sessions:
                return TOO_MANY
            if self.of_client(client) >= max_per_client:
                return TOO_MANY_FROM_CLIENT
            self._add(bucket, 1)
        self._clients[client] += 1
        return None

    def release(self, client: str) -> None:
        if self._clients[client] <= 0:
            return
        self._clients[client] -= 1
        if not self._clients[client]:
            del self._clients[client]
        with self._locked():
            self._add(self._bucket(client), -1)

    def _add(self, bucket: int, step: int) -> None:
        (total,) = _TOTAL.unpack_from(self._map, self._own)
        _TOTAL.pack_into(self._map, self._own, max(0, total + step))
        offset = self._bucket_offset(self.worker, bucket)
        (count,) = _BUCKET.unpack_from(self._map, offset)
        _BUCKET.pack_into(self._map, offset, min(0xFFFF, max(0, count + step)))

    def close(self) -> None:
        if self._fd < 0:
            return
        with self._locked():
            self._map[self._own : self._own + REGION] = bytes(REGION)
        self._map.close()
        os.close(self._fd)
        self._fd = -1
