"""Connection slots shared by the processes of one host move to where the mail is
(delivery/throttles/host_throttles.py): a connection with nothing to carry closes at
once, instead of staying idle for the idle timeout, when another process found every
slot taken and holds at least two fewer. The engine on a manual clock with a fake
transport; the other process is real (tests/delivery/test_host_throttles.py's waiter)."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.delivery.engine_harness import Harness
from tests.delivery.test_host_throttles import want_slot
from vmta.delivery.throttles.host_throttles import HostThrottles
from vmta.domain.config.virtual_mta import Limits


async def connections_after_a_message(h: Harness, *, wanted: bool) -> int:
    """Open connections 1 s after one more message went out, two being idle before."""
    h.add_relay("relay", Limits(2, 0))

    async def until_both_open(data: bytes) -> None:
        # Each of the first two messages is held until a second connection is open, so
        # that one connection cannot carry both (bounded: the test's clock moves on).
        for _ in range(10_000):
            if h.transport.open_now >= 2:
                return
            await asyncio.sleep(0.001)

    h.transport.during_send = until_both_open
    await h.inject(2)
    await h.until(lambda: len(h.transport.sent) == 2, 10)
    assert h.transport.open_now == 2
    h.transport.during_send = None
    if wanted:
        (path,) = h.plane.engine.path_states()
        throttles = h.plane.throttles
        assert isinstance(throttles, HostThrottles)
        directory = throttles.directory
        got = await asyncio.to_thread(want_slot, directory, path["throttle"], 2, h.clock.now())
        assert got == "None"  # both slots are this process's
    await h.inject(1)
    await h.until(lambda: len(h.transport.sent) == 3, 10)
    await h.run_for(1.0)  # well within the idle timeout (5 s)
    return h.transport.open_now


async def test_an_idle_connection_gives_its_slot_to_a_waiting_process(
    harness_factory: Any,
) -> None:
    h: Harness = await harness_factory(host_throttles=True)
    # The connection that carried the third message closes; the other was already idle.
    assert await connections_after_a_message(h, wanted=True) == 1


async def test_without_a_waiting_process_idle_connections_stay_open(
    harness_factory: Any,
) -> None:
    h: Harness = await harness_factory(host_throttles=True)
    assert await connections_after_a_message(h, wanted=False) == 2
