"""The engine state of every process of one `vmta serve` (``VMTA_WORKERS``), for
``GET /api/queue``.

The spool counts are shared (the database), but what each engine holds in memory, its
paths and what it recovered are its own process's. Each worker writes its state to a
file of its own in ``<data_dir>/engine-state/`` every second (written whole, then renamed
into place, so a reader never sees half of one); the process serving the API adds up its
own state and every worker's that is fresh (a worker that stopped writing is left out).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DIRECTORY = "engine-state"
WRITE_EVERY = 1.0  # seconds
FRESH_FOR = 5.0  # seconds: an older file is a worker that stopped writing
_SUMMED = ("in_memory", "recovered_in_flight", "events_recovered_in_flight")


def board_dir(data_dir: Path) -> Path:
    return data_dir / DIRECTORY


def reset(data_dir: Path) -> None:
    """The files of an earlier run go (the serving process calls this at start)."""
    directory = board_dir(data_dir)
    if directory.is_dir() and not directory.is_symlink():
        shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(mode=0o700, exist_ok=True)


def write(data_dir: Path, index: int, state: dict[str, Any]) -> None:
    path = board_dir(data_dir) / f"worker-{index}.json"
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(state, default=str), encoding="utf-8")
    os.replace(partial, path)


def read_workers(data_dir: Path, now: float | None = None) -> list[dict[str, Any]]:
    """Every worker's state written within ``FRESH_FOR`` seconds."""
    now = time.time() if now is None else now
    states = []
    directory = board_dir(data_dir)
    if not directory.is_dir():
        return []
    for path in sorted(directory.glob("worker-*.json")):
        try:
            if now - path.stat().st_mtime > FRESH_FOR:
                continue
            states.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue  # replaced or removed while read: the next request sees it
    return states


def combined(own: dict[str, Any], workers: list[dict[str, Any]]) -> dict[str, Any]:
    """This process's state plus every worker's: counts summed, paths put together, the
    node names listed; ``processes`` says how many were summed."""
    total = dict(own)
    total["processes"] = 1 + len(workers)
    total["nodes"] = [own.get("node"), *(w.get("node") for w in workers)]
    total["paths"] = list(own.get("paths", []))
    for state in workers:
        for key in _SUMMED:
            total[key] = int(total.get(key, 0)) + int(state.get(key, 0))
        total["paths"].extend(state.get("paths", []))
        total["running"] = bool(total.get("running")) and bool(state.get("running"))
    return total


async def publish(data_dir: Path, index: int, state: Callable[[], dict[str, Any]]) -> None:
    """A worker's task: write its state every ``WRITE_EVERY`` seconds until cancelled."""
    while True:
        try:
            await asyncio.to_thread(write, data_dir, index, state())
        except OSError as exc:
            log.warning("cannot write the engine state for /api/queue: %s", exc.strerror)
        await asyncio.sleep(WRITE_EVERY)


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
