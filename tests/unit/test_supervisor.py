"""The supervisor of long-running tasks (a failure is logged and the task started again,
never lost silently) and the outage log (one traceback per outage, then one line each)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.manual_clock import ManualClock
from vmta.delivery.engine.task_set import TaskSet
from vmta.resilience.outage_log import OutageLog
from vmta.resilience.supervisor import log_failure, supervised

pytestmark = pytest.mark.one_database


async def _until(check: object, steps: int = 200) -> None:
    for _ in range(steps):  # bounded: the loop only yields, no real time
        if check():  # type: ignore[operator]
            return
        await asyncio.sleep(0)
    raise AssertionError("never happened")


async def test_a_failing_loop_is_logged_and_restarted_with_growing_pauses(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()
    runs: list[float] = []

    async def loop() -> None:
        runs.append(clock.now())
        if len(runs) <= 3:
            raise RuntimeError(f"boom {len(runs)}")

    start = clock.now()
    task = asyncio.ensure_future(supervised("poll", loop, clock=clock, first_pause=1.0))
    await _until(lambda: len(runs) == 1)
    for pause in (1.0, 2.0, 4.0):
        count = len(runs)
        clock.advance(pause - 0.01)
        for _ in range(20):
            await asyncio.sleep(0)
        assert len(runs) == count  # not before its pause
        clock.advance(0.01)
        await _until(lambda count=count: len(runs) == count + 1)
    await asyncio.wait_for(task, 1)  # the fourth run returned: supervision ends with it
    assert [r - start for r in runs] == pytest.approx([0.0, 1.0, 3.0, 7.0])
    failures = [r for r in caplog.records if "task poll failed" in r.getMessage()]
    assert len(failures) == 3 and all(r.exc_info for r in failures)


async def test_supervision_stops_when_cancelled() -> None:
    clock = ManualClock()

    async def forever() -> None:
        await asyncio.Event().wait()

    task = asyncio.ensure_future(supervised("idle", forever, clock=clock))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_one_shot_task_that_fails_is_logged_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tasks = TaskSet()

    async def broken() -> None:
        raise ValueError("body read failed")

    tasks.spawn(broken())
    await _until(lambda: len(tasks) == 0)
    await asyncio.sleep(0)
    (record,) = [r for r in caplog.records if r.getMessage().startswith("task ")]
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert "body read failed" in str(record.exc_info[1])


def test_log_failure_ignores_cancelled_tasks(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.new_event_loop()
    try:
        task = loop.create_task(asyncio.sleep(10))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            loop.run_until_complete(task)
        log_failure(task)
    finally:
        loop.close()
    assert caplog.records == []


def test_an_outage_logs_one_traceback_then_one_line_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outage = OutageLog(logging.getLogger("vmta.test"), "the database")
    caplog.set_level(logging.INFO)
    for n in range(5):
        outage.failed("could not store a message from %s", OSError(f"reset {n}"), "10.0.0.1")
    outage.worked()
    outage.worked()  # no outage: nothing more
    outage.failed("could not store a message from %s", OSError("again"), "10.0.0.2")
    records = caplog.records
    assert len(records) == 7
    with_traceback = [r for r in records if r.exc_info]
    assert [r.getMessage() for r in with_traceback] == [
        "could not store a message from 10.0.0.1",
        "could not store a message from 10.0.0.2",
    ]
    assert records[1].getMessage() == "could not store a message from 10.0.0.1 (OSError: reset 1)"
    assert records[5].getMessage() == "the database works again after 5 failure(s)"
