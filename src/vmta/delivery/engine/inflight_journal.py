"""Which recipients were being handed to a remote server when the process died.

Before a transaction starts, the ids of its recipients are appended to a journal file;
after its outcome is committed, a matching "done" line follows. After a crash (kill -9)
the lines already written are in the page cache and survive, so recovery can tell exactly
which recipients may have reached the remote server without their outcome being stored:
those, and only those, may be delivered twice (at-least-once delivery).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

MAX_BYTES = 16 * 1024 * 1024  # past this, the journal is rewritten with what is still open


class InflightJournal:
    def __init__(self, path: Path, max_bytes: int = MAX_BYTES) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._fd: int | None = None
        self._open: set[int] = set()  # started, not yet finished
        self._size = 0

    def recover(self) -> set[int]:
        """Ids started and never finished in the previous run; then start a new journal."""
        started: set[int] = set()
        if self.path.exists():
            for line in self.path.read_text(encoding="ascii", errors="ignore").splitlines():
                kind, _, ids = line.partition(" ")
                values = {int(x) for x in ids.split(",") if x.isdigit()}
                if kind == "S":
                    started |= values
                elif kind == "D":
                    started -= values
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._open.clear()
        self._size = 0
        return started

    def _write(self, kind: str, ids: Iterable[int]) -> None:
        if self._fd is None:
            return
        line = f"{kind} {','.join(str(i) for i in ids)}\n".encode("ascii")
        os.write(self._fd, line)
        self._size += len(line)

    def started(self, ids: Iterable[int]) -> None:
        ids = list(ids)
        self._open.update(ids)
        self._write("S", ids)

    def finished(self, ids: Iterable[int]) -> None:
        ids = list(ids)
        self._open.difference_update(ids)
        self._write("D", ids)
        if self._size > self.max_bytes:
            self._compact()

    def _compact(self) -> None:
        """Replace the journal by one that holds only what is still open. The rename is
        atomic: after a crash, either the old or the new file is there, and both say the
        same about every recipient."""
        if self._fd is None:
            return
        fresh = self.path.with_suffix(".tmp")
        fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        line = f"S {','.join(str(i) for i in sorted(self._open))}\n".encode("ascii")
        os.write(fd, line)
        os.replace(fresh, self.path)
        os.close(self._fd)
        self._fd = fd
        self._size = len(line)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
