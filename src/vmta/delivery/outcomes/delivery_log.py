"""The JSON delivery log: one line per attempt, in the data directory.

Its ``time`` is ISO 8601 in UTC with milliseconds (``2026-12-07T02:58:42.628Z``), as
people and log shippers read it. ``reopen`` closes the file and opens the path again: after
logrotate renamed it (SIGHUP, runtime/log_files.py), lines go to a new file at the path
while every line written before is complete in the renamed one (each line is one write
on an O_APPEND descriptor).
"""

from __future__ import annotations

import errno
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from vmta.domain.errors import PermanentError


class DeliveryLogRefused(PermanentError):
    """The delivery log cannot be opened safely (a symlink in its place, no permission)."""


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
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        # Start-up stops with this sentence (the CLI prints it, exit status 1), not with
        # a traceback.
        if exc.errno == errno.ELOOP:
            reason = "it is a symbolic link (refused: remove it, vmta creates the file)"
        else:
            reason = exc.strerror or str(exc)
        raise DeliveryLogRefused(f"cannot open the delivery log {path}: {reason}") from None
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "a", encoding="utf-8", buffering=1)
