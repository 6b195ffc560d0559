"""The delivery engine's asynchronous door to the spool.

All writes go through one thread, in batches (group commit): an accepted message is
acknowledged only after the transaction that holds it has committed, and many sessions'
messages share that commit. Reads of message bodies use a separate small pool, so they
never wait behind a commit.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, Protocol, TypeVar

from vmta.delivery.committer import BatchRunner
from vmta.domain.spool_records import Job, NewMessage, Outcome
from vmta.store.spool import SqlSpool

P = ParamSpec("P")
T = TypeVar("T")


class CommitObserver(Protocol):
    """Told about each group commit once it is durable (vmta.runtime.metrics)."""

    def spool_commit(self, seconds: float) -> None: ...

    def recorded(self, outcomes: Sequence[Outcome]) -> None: ...


class SpoolGateway:
    def __init__(
        self,
        spool: SqlSpool,
        *,
        lease_seconds: float,
        max_batch: int = 500,
        observer: CommitObserver | None = None,
    ) -> None:
        self.spool = spool
        self.lease_seconds = lease_seconds
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool-writer")
        self._readers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="spool-reader")
        self._accepts: BatchRunner[tuple[NewMessage, float | None], list[Job]] = BatchRunner(
            self._writer, self._accept_batch, max_batch=max_batch
        )
        self._outcomes: BatchRunner[Outcome, BaseException | None] = BatchRunner(
            self._writer, self._record_batch, max_batch=max_batch * 4
        )
        self.observer = observer  # commit latency and committed outcomes (metrics)

    def start(self) -> None:
        self._accepts.start()
        self._outcomes.start()

    async def stop(self) -> None:
        await self._accepts.stop()
        await self._outcomes.stop()
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)

    # ---- group-committed writes ----------------------------------------------------------

    def _accept_batch(self, items: Sequence[tuple[NewMessage, float | None]]) -> list[list[Job]]:
        leases = [lease for _, lease in items if lease is not None]
        unclaimed = [message.id for message, lease in items if lease is None]
        started = time.perf_counter()
        jobs = self.spool.accept(
            [message for message, _ in items], max(leases) if leases else None, unclaimed
        )
        if self.observer is not None:
            self.observer.spool_commit(time.perf_counter() - started)
        by_message: dict[str, list[Job]] = {}
        for job in jobs:
            by_message.setdefault(job.message_id, []).append(job)
        return [by_message.get(message.id, []) for message, _ in items]

    def _record_batch(self, outcomes: Sequence[Outcome]) -> list[BaseException | None]:
        """One transaction for the batch; if it fails, each outcome alone, so that one
        outcome the store refuses cannot hold back the others (each caller learns its
        own result)."""
        started = time.perf_counter()
        try:
            self.spool.record(outcomes)
            results: list[BaseException | None] = [None] * len(outcomes)
        except Exception:
            if len(outcomes) == 1:
                raise
            results = []
            for outcome in outcomes:
                try:
                    self.spool.record([outcome])
                    results.append(None)
                except Exception as exc:
                    results.append(exc)
        if self.observer is not None:
            self.observer.spool_commit(time.perf_counter() - started)
            self.observer.recorded([o for o, r in zip(outcomes, results, strict=True) if r is None])
        return results

    async def accept(self, message: NewMessage, now: float, *, claim: bool = True) -> list[Job]:
        """Returns once the message is committed. With ``claim`` its recipients are
        leased to this node and returned; otherwise they wait for a poll."""
        return await self._accepts.submit((message, now + self.lease_seconds if claim else None))

    async def record(self, outcome: Outcome) -> None:
        problem = await self._outcomes.submit(outcome)
        if problem is not None:
            raise problem

    # ---- other work on the writer thread -------------------------------------------------

    async def _on_writer(self, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, functools.partial(func, *args, **kwargs))

    async def claim_due(self, now: float, limit: int, lease_until: float) -> list[Job]:
        return await self._on_writer(self.spool.claim_due, now, limit, lease_until)

    async def renew_leases(self, lease_until: float) -> int:
        return await self._on_writer(self.spool.renew_leases, lease_until)

    async def release_own_leases(self, now: float) -> int:
        return await self._on_writer(self.spool.release_own_leases, now)

    async def purge_finished(self, before: float, limit: int) -> int:
        return await self._on_writer(self.spool.purge_finished, before, limit)

    async def queued_count(self) -> int:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self.spool.queued_count)

    async def body(self, message_id: str) -> bytes | None:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self.spool.body, message_id)

    @property
    def commit_stats(self) -> dict[str, int]:
        return {
            "accept_batches": self._accepts.batches,
            "accepted": self._accepts.items,
            "outcome_batches": self._outcomes.batches,
            "outcomes": self._outcomes.items,
        }
