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


class InflightJournal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

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
        return started

    def _write(self, kind: str, ids: Iterable[int]) -> None:
        if self._fd is None:
            return
        os.write(self._fd, f"{kind} {','.join(str(i) for i in ids)}\n".encode("ascii"))

    def started(self, ids: Iterable[int]) -> None:
        self._write("S", ids)

    def finished(self, ids: Iterable[int]) -> None:
        self._write("D", ids)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
