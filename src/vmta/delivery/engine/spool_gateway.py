"""The delivery engine's asynchronous door to the spool.

All writes go through one thread, in batches (group commit): an accepted message is
acknowledged only after the transaction that holds it has committed, and many sessions'
messages share that commit, with the outcomes that arrived meanwhile: one writer cycle,
one transaction, one fsync. Reads of message bodies use a separate small pool, so they
never wait behind a commit, and are batched the same way.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import ParamSpec, Protocol, TypeVar

from vmta.delivery.engine.committer import BatchRunner
from vmta.domain.attempts.spool_records import Job, NewMessage, Outcome
from vmta.store.database import DatabaseUnavailable, as_unavailable
from vmta.store.spool import SqlSpool

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True)
class Pending:
    """A message to accept, and the lease of its recipients (None: unclaimed)."""

    message: NewMessage
    lease_until: float | None


WriteItem = Pending | Outcome
# Seconds an accept may wait for its commit before the client is told 451 (contract:
# within 30 s, whatever the database does).
ACCEPT_DEADLINE = 25.0


def _lease(pending: Iterable[Pending]) -> float | None:
    leases = [p.lease_until for p in pending if p.lease_until is not None]
    return max(leases) if leases else None


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
        accept_deadline: float = ACCEPT_DEADLINE,
    ) -> None:
        self.spool = spool
        self.accept_deadline = accept_deadline
        self.lease_seconds = lease_seconds
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool-writer")
        self._readers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="spool-reader")
        # Accepts and outcomes share one runner: a writer cycle commits both at once.
        # An accept whose client was already told 451 (its deadline passed while it
        # waited behind a commit that hung) is not committed afterwards: the client sends
        # it again. An outcome is always written.
        self._writes: BatchRunner[WriteItem, object] = BatchRunner(
            self._writer,
            self._write_cycle,
            max_batch=max_batch * 4,
            abandoned=lambda item: isinstance(item, Pending),
        )
        self._max_accepts = max_batch
        self._body_reads: BatchRunner[str, bytes | None] = BatchRunner(
            self._readers, self._read_bodies, max_batch=max_batch
        )
        self.observer = observer  # commit latency and committed outcomes (metrics)

    def start(self) -> None:
        self._writes.start()
        self._body_reads.start()

    async def stop(self) -> None:
        await self._writes.stop()
        await self._body_reads.stop()
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)

    # ---- group-committed writes ----------------------------------------------------------

    def _write_cycle(self, items: Sequence[WriteItem]) -> list[object]:
        """One transaction for the accepts and the outcomes of this cycle (one fsync). If it
        fails: the accepts alone, then the outcomes alone, each as before (so that one
        outcome the store refuses fails neither the accepts nor the other outcomes). Each
        item's result is its value or the exception its caller raises."""
        accepts = [(i, item) for i, item in enumerate(items) if isinstance(item, Pending)]
        outcomes = [(i, item) for i, item in enumerate(items) if isinstance(item, Outcome)]
        results: list[object] = [None] * len(items)
        started = time.perf_counter()
        try:
            jobs = self.spool.write_cycle(
                [p.message for _, p in accepts],
                _lease(p for _, p in accepts),
                [p.message.id for _, p in accepts if p.lease_until is None],
                [o for _, o in outcomes],
            )
        except Exception:
            if not (accepts and outcomes):
                if accepts:
                    raise  # every accept of the batch fails: none may say 250
                return self._record_alone(items)
            try:
                alone = self.spool.accept(
                    [p.message for _, p in accepts],
                    _lease(p for _, p in accepts),
                    [p.message.id for _, p in accepts if p.lease_until is None],
                )
                self._fill_jobs(results, accepts, alone)
            except Exception as exc:
                for i, _ in accepts:
                    results[i] = exc
            for (i, _), result in zip(
                outcomes, self._record_alone([o for _, o in outcomes]), strict=True
            ):
                results[i] = result
            return results
        self._fill_jobs(results, accepts, jobs)
        if self.observer is not None:
            self.observer.spool_commit(time.perf_counter() - started)
            self.observer.recorded([o for _, o in outcomes])
        return results

    @staticmethod
    def _fill_jobs(
        results: list[object], accepts: list[tuple[int, Pending]], jobs: list[Job]
    ) -> None:
        by_message: dict[str, list[Job]] = {}
        for job in jobs:
            by_message.setdefault(job.message_id, []).append(job)
        for i, pending in accepts:
            results[i] = by_message.get(pending.message.id, [])

    def _record_alone(self, outcomes: Sequence[WriteItem]) -> list[object]:
        """The outcomes in one transaction; if it fails, each alone, so that one outcome
        the store refuses cannot hold back the others (each caller learns its own)."""
        assert all(isinstance(o, Outcome) for o in outcomes)
        batch = [o for o in outcomes if isinstance(o, Outcome)]
        started = time.perf_counter()
        results: list[object]
        try:
            self.spool.record(batch)
            results = [None] * len(batch)
        except Exception as exc:
            if len(batch) == 1:
                return [exc]
            results = []
            for outcome in batch:
                try:
                    self.spool.record([outcome])
                    results.append(None)
                except Exception as each:
                    results.append(each)
        if self.observer is not None:
            self.observer.spool_commit(time.perf_counter() - started)
            self.observer.recorded([o for o, r in zip(batch, results, strict=True) if r is None])
        return results

    async def accept(self, message: NewMessage, now: float, *, claim: bool = True) -> list[Job]:
        """Returns once the message is committed. With ``claim`` its recipients are
        leased to this node and returned; otherwise they wait for a poll."""
        lease = now + self.lease_seconds if claim else None
        try:
            # A deadline of its own: a database that stops answering without resetting
            # the connection (a partition that still acknowledges at the TCP level
            # defeats keepalives and the TCP user timeout) must cost the client at most
            # this long before its 451. The commit may still happen later; it was not
            # acknowledged, so the worst is a message the client sends again. A timeout
            # scope rather than wait_for, which would wrap every accept in a task of its
            # own (about 9 µs of CPU per message, docs/PERFORMANCE.md, round 5); either
            # way the waiting is cancelled, and the batch drops an accept given up on.
            async with asyncio.timeout(self.accept_deadline):
                result = await self._writes.submit(Pending(message, lease))
        except TimeoutError:
            raise DatabaseUnavailable(
                f"the database did not answer within {self.accept_deadline:.0f} s"
            ) from None
        except Exception as exc:
            raise as_unavailable(exc)  # noqa: B904 - its cause is set
        if isinstance(result, BaseException):
            raise as_unavailable(result)
        assert isinstance(result, list)
        return result

    async def record(self, outcome: Outcome) -> None:
        try:
            problem = await self._writes.submit(outcome)
        except Exception as exc:
            raise as_unavailable(exc)  # noqa: B904 - its cause is set
        if isinstance(problem, BaseException):
            raise as_unavailable(problem)

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
        """The message's body, or None once it is deleted. Reads that arrive while one
        is on its way share the next query: one hand-over to the reader thread and back
        for many connections' messages instead of one each."""
        try:
            return await self._body_reads.submit(message_id)
        except Exception as exc:
            raise as_unavailable(exc)  # noqa: B904 - its cause is set

    def _read_bodies(self, message_ids: Sequence[str]) -> list[bytes | None]:
        found = self.spool.bodies(message_ids)
        return [found.get(message_id) for message_id in message_ids]

    @property
    def read_stats(self) -> dict[str, int]:
        return {"body_queries": self._body_reads.batches, "bodies_asked": self._body_reads.items}

    @property
    def commit_stats(self) -> dict[str, int]:
        return {"write_cycles": self._writes.batches, "writes": self._writes.items}
