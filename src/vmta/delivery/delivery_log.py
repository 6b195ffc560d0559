"""The JSON delivery log: one line per attempt, in the data directory.

Its ``time`` is ISO 8601 in UTC with milliseconds (``2026-12-07T02:58:42.628Z``), as
people and log shippers read it. ``reopen`` closes the file and opens the path again: after
logrotate renamed it (SIGHUP, runtime/log_files.py), lines go to a new file at the path
while every line written before is complete in the renamed one (each line is one write
on an O_APPEND descriptor).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO


def iso_time(epoch: float) -> str:
    """``epoch`` seconds as ISO 8601 UTC with milliseconds and a ``Z``."""
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class DeliveryLog:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._handle: TextIO | None = None
        if path is not None:
            self._handle = _open(path)

    def write(self, record: dict[str, Any]) -> None:
        if self._handle is not None:
            self._handle.write(json.dumps(record, separators=(",", ":"), sort_keys=True) + "\n")

    def reopen(self) -> None:
        """Open the path again (after a rotation); the old file is closed after the new
        one is open, so no line has nowhere to go."""
        if self.path is None or self._handle is None:
            return
        fresh = _open(self.path)
        old, self._handle = self._handle, fresh
        old.close()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def _open(path: Path) -> TextIO:
    # 0600: the log names every sender and recipient. O_NOFOLLOW refuses a symlink
    # planted in its place; fchmod tightens a file an older version left 0644.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "a", encoding="utf-8", buffering=1)
