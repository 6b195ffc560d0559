"""Queue ids: short, unique across nodes, and sortable by time of acceptance."""

from __future__ import annotations

import secrets
import time


def new_queue_id(now: float | None = None) -> str:
    """12 hex digits of milliseconds since the epoch, then 8 random hex digits."""
    millis = int((time.time() if now is None else now) * 1000)
    return f"{millis:012X}{secrets.token_hex(4).upper()}"
