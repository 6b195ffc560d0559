"""Storing outcomes (delivery/engine/outcome_recorder.py): an outcome the store refuses is tried
again on its own, and given up after ``store_tries`` with its recipient named, whether it
came alone (awaited as it is) or with others (stored side by side)."""

from __future__ import annotations

import asyncio
from collections import Counter

from tests.manual_clock import ManualClock
from vmta.delivery.engine.occupancy import Occupancy
from vmta.delivery.engine.outcome_recorder import OutcomeRecorder, RecorderSettings
from vmta.delivery.outcomes.delivery_log import DeliveryLog
from vmta.domain.attempts.delivery_outcome import ReplyLine
from vmta.domain.attempts.spool_records import Job, Outcome


class RefusingSpool:
    """Stores outcomes in memory, refusing each recipient's first ``refusals[id]``."""

    def __init__(self, refusals: dict[int, int]) -> None:
        self.refusals = refusals
        self.tries: Counter[int] = Counter()
        self.stored: list[Outcome] = []

    async def record(self, outcome: Outcome) -> None:
        await asyncio.sleep(0)  # a hand-over, as to the writer thread
        self.tries[outcome.recipient_id] += 1
        if self.tries[outcome.recipient_id] <= self.refusals.get(outcome.recipient_id, 0):
            raise RuntimeError("refused")
        self.stored.append(outcome)


def job(n: int) -> Job:
    return Job(n, f"Q{n}", f"r{n}@d.test", 0, "s@d.test", 0.0, 1e12, None, None, False)


async def defer(spool: RefusingSpool, jobs: list[Job]) -> set[int]:
    clock = ManualClock()
    recorder = OutcomeRecorder(
        spool=spool,  # type: ignore[arg-type]  # record() is all that storing uses
        clock=clock,
        settings=RecorderSettings(store_tries=3),
        delivery_log=DeliveryLog(None),
        occupancy=Occupancy(10),
        bounces=None,
    )
    task = asyncio.create_task(recorder.defer_all(jobs, ReplyLine(451, "4.3.0 later"), None))
    while not task.done():
        await asyncio.sleep(0)
        clock.advance(1.0)
    return task.result()


async def test_one_outcome_refused_then_stored() -> None:
    spool = RefusingSpool({1: 2})
    assert await defer(spool, [job(1)]) == set()
    assert spool.tries == {1: 3}
    assert [o.recipient_id for o in spool.stored] == [1]


async def test_one_outcome_always_refused_is_given_up() -> None:
    spool = RefusingSpool({1: 99})
    assert await defer(spool, [job(1)]) == {1}
    assert spool.tries == {1: 3} and spool.stored == []


async def test_outcomes_together_are_each_their_own_unit() -> None:
    spool = RefusingSpool({2: 1, 3: 99})
    assert await defer(spool, [job(1), job(2), job(3)]) == {3}
    assert spool.tries == {1: 1, 2: 2, 3: 3}
    assert sorted(o.recipient_id for o in spool.stored) == [1, 2]
