"""Supervision of vmta's long-running tasks: a loop that raises is logged with its
traceback and started again after a pause, instead of dying as a task nobody awaits
("Task exception was never retrieved") while the rest of the node goes on as if it ran."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from vmta.domain.clock import Clock, SystemClock

log = logging.getLogger(__name__)

FIRST_PAUSE = 1.0  # seconds before the first restart; doubles while it keeps failing
LONGEST_PAUSE = 30.0


async def supervised(
    name: str,
    run: Callable[[], Awaitable[None]],
    *,
    clock: Clock | None = None,
    first_pause: float = FIRST_PAUSE,
    longest_pause: float = LONGEST_PAUSE,
) -> None:
    """Run ``run()`` until it returns (its own decision to stop) or is cancelled; each
    exception is logged and ``run`` is started again. A run that lasted longer than
    ``longest_pause`` resets the pause: it worked for a while."""
    clock = clock or SystemClock()
    pause = first_pause
    while True:
        started = clock.now()
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            if clock.now() - started > longest_pause:
                pause = first_pause
            log.exception("task %s failed; restarting it in %.1f s", name, pause)
        await clock.sleep(pause)
        pause = min(pause * 2, longest_pause)


def log_failure(task: asyncio.Task[object]) -> None:
    """A done-callback for one-shot tasks: a failure is logged at once, never silent."""
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error("task %s failed", task.get_name(), exc_info=exc)
