"""The JSON delivery log: one line per attempt, in the data directory."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any, TextIO

from vmta.domain.errors import PermanentError


class DeliveryLogRefused(PermanentError):
    """The delivery log cannot be opened safely (a symlink in its place, no permission)."""


class DeliveryLog:
    def __init__(self, path: Path | None) -> None:
        self._handle: TextIO | None = None
        if path is not None:
            # 0600: the log names every sender and recipient. O_NOFOLLOW refuses a symlink
            # planted in its place; fchmod tightens a file an older version left 0644.
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
            except OSError as exc:
                # Start-up stops with this sentence (the CLI prints it, exit status 1),
                # not with a traceback.
                if exc.errno == errno.ELOOP:
                    reason = "it is a symbolic link (refused: remove it, vmta creates the file)"
                else:
                    reason = exc.strerror or str(exc)
                raise DeliveryLogRefused(f"cannot open the delivery log {path}: {reason}") from None
            os.fchmod(fd, 0o600)
            self._handle = os.fdopen(fd, "a", encoding="utf-8", buffering=1)

    def write(self, record: dict[str, Any]) -> None:
        if self._handle is not None:
            self._handle.write(json.dumps(record, separators=(",", ":"), sort_keys=True) + "\n")

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
