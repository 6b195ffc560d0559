"""The JSON delivery log: one line per attempt, in the data directory."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TextIO


class DeliveryLog:
    def __init__(self, path: Path | None) -> None:
        self._handle: TextIO | None = None
        if path is not None:
            # 0600: the log names every sender and recipient. O_NOFOLLOW refuses a symlink
            # planted in its place; fchmod tightens a file an older version left 0644.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
            os.fchmod(fd, 0o600)
            self._handle = os.fdopen(fd, "a", encoding="utf-8", buffering=1)

    def write(self, record: dict[str, Any]) -> None:
        if self._handle is not None:
            self._handle.write(json.dumps(record, separators=(",", ":"), sort_keys=True) + "\n")

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
