"""Group commit: many coroutines hand work to one database thread, which runs it in
batches, so that many SMTP sessions share one transaction and one fsync.

A single thread also means a single writer, which is what SQLite wants; on PostgreSQL it
keeps the number of connections of the data plane at one per node.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class BatchRunner(Generic[T, R]):
    """Collects items; runs ``work(batch)`` on ``executor``; each caller gets its result.

    ``work`` returns one result per item, in order. If it raises, every caller of that
    batch gets the exception: none of them may treat its item as committed.
    """

    def __init__(
        self,
        executor: ThreadPoolExecutor,
        work: Callable[[Sequence[T]], Sequence[R]],
        *,
        max_batch: int = 500,
        abandoned: Callable[[T], bool] | None = None,
    ) -> None:
        """``abandoned(item)``: True for an item to drop, not run, when its caller gave up
        waiting (its future was cancelled) before its batch started."""
        self._executor = executor
        self._work = work
        self._max_batch = max_batch
        self._abandoned = abandoned
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.items = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._idle.clear()
        self._wakeup.set()
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                if self._abandoned is not None:
                    batch = [
                        (item, future)
                        for item, future in batch
                        if not (future.cancelled() and self._abandoned(item))
                    ]
                    if not batch:
                        continue
                items = [item for item, _ in batch]
                try:
                    results = await loop.run_in_executor(self._executor, self._work, items)
                except Exception as exc:  # every caller of the batch must learn it failed
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                self.batches += 1
                self.items += len(items)
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
            self._idle.set()

    async def stop(self) -> None:
        """Finish what is pending, then stop."""
        if self._task is not None:
            await self._idle.wait()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
