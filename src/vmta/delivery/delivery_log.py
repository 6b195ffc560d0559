"""The JSON delivery log: one line per attempt, in the data directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO


class DeliveryLog:
    def __init__(self, path: Path | None) -> None:
        self._handle: TextIO | None = None
        if path is not None:
            self._handle = path.open("a", encoding="utf-8", buffering=1)

    def write(self, record: dict[str, Any]) -> None:
        if self._handle is not None:
            self._handle.write(json.dumps(record, separators=(",", ":"), sort_keys=True) + "\n")

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
