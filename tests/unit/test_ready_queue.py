"""The ready queue as pure logic (delivery/engine/ready_queue.py): what each event does to it,
on the manual clock; no connection, no dispatcher. The engine-level counterparts, on a
scripted transport, are in tests/delivery/test_engine_adversity.py."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from tests.manual_clock import ManualClock
from vmta.delivery.engine.ready_queue import Carry, Delivery, QueuePolicy, ReadyQueue
from vmta.delivery.routing.router import Deliver
from vmta.domain.attempts.delivery_outcome import ReplyLine
from vmta.domain.attempts.spool_records import Job
from vmta.domain.paths.egress_path import EgressPath
from vmta.domain.paths.egress_route import direct_route

PATH = EgressPath(("relay_server", "1"), "relay.test", 25, direct_route(None), "out.test")
POLICY = QueuePolicy(
    failures_before_delay=3, failure_delay=60.0, failure_memory=3600.0, max_connection_rate=2.0
)
REFUSED = ReplyLine(451, "4.4.1 connection refused")
THROTTLE = "relay_server/1"


async def carry_all(throttle: str) -> Carry:
    return Carry.TAKEN


def delivery(n: int) -> Delivery:
    job = Job(n, f"m{n}", f"r{n}@relay.test", 0, "s@src.test", 0.0, 1e12, None, None, False)
    return Delivery([job], Deliver(PATH, None, None))


def make(clock: ManualClock, policy: QueuePolicy = POLICY) -> tuple[ReadyQueue, asyncio.Event]:
    stopping = asyncio.Event()
    return ReadyQueue(PATH, policy, clock, stopping), stopping


async def turns(n: int = 5) -> None:
    """Let the tasks started by a test run as far as they can (the clock does not move)."""
    for _ in range(n):
        await asyncio.sleep(0)


async def test_a_delivery_put_back_wakes_an_idle_connection_at_once() -> None:
    clock = ManualClock()
    queue, _ = make(clock)
    idle = asyncio.ensure_future(queue.take(5.0, carry_all))
    await turns()
    assert not idle.done() and not queue.wants_connection()
    queue.put_back(delivery(1))  # its connection closed before sending it
    await turns()
    assert idle.done() and idle.result() == delivery(1)  # no clock time passed


async def test_one_arrival_wakes_one_idle_connection_and_the_others_wait_on() -> None:
    clock = ManualClock()
    queue, _ = make(clock)
    idle = [asyncio.ensure_future(queue.take(5.0, carry_all)) for _ in range(3)]
    await turns()
    queue.push(delivery(1))
    await turns()
    done = [task for task in idle if task.done()]
    assert [task.result() for task in done] == [delivery(1)]
    queue.push(delivery(2))
    await turns()
    assert sorted(t.result().first.recipient_id for t in idle if t.done() and t.result()) == [1, 2]
    clock.advance(5.0)  # the last one's idle time runs out: it closes
    await turns()
    assert all(task.done() for task in idle)
    assert [t.result() for t in idle].count(None) == 1


async def test_idle_connections_count_against_new_ones() -> None:
    clock = ManualClock()
    queue, _ = make(clock)
    idle = asyncio.ensure_future(queue.take(5.0, carry_all))
    await turns()
    queue.push(delivery(1))
    assert not queue.wants_connection()  # the woken idle connection takes it
    queue.push(delivery(2))
    assert queue.wants_connection()  # one more than the idle connections can take
    await turns()
    assert idle.result() == delivery(1)


async def test_stopping_ends_idle_connections_and_takes_nothing() -> None:
    clock = ManualClock()
    queue, stopping = make(clock)
    idle = asyncio.ensure_future(queue.take(5.0, carry_all))
    await turns()
    stopping.set()
    await turns()
    assert idle.done() and idle.result() is None
    queue.push(delivery(1))
    assert await queue.take(5.0, carry_all) is None  # it stays for the release at stop
    assert not queue.wants_connection()
    assert queue.drain() == [delivery(1)]


async def test_connections_are_counted_from_connecting_to_closed() -> None:
    clock = ManualClock()
    queue, _ = make(clock)
    queue.push(delivery(1))
    assert queue.connecting(clock.now(), THROTTLE) == delivery(1)
    assert queue.connections == 1 and len(queue) == 0
    assert queue.connecting(clock.now(), THROTTLE) is None  # nothing waits: nothing to open for
    queue.closed()
    assert queue.connections == 0
    assert queue.forget_at(clock.now()) == clock.now()


async def test_the_connection_rate_spaces_new_connections() -> None:
    clock = ManualClock()
    queue, _ = make(clock)  # 2 a second
    now = clock.now()
    for n in range(3):
        queue.push(delivery(n))
    assert queue.open_at(now) == now
    queue.connecting(now, THROTTLE)
    queue.connecting(now, THROTTLE)
    assert queue.open_at(now) == now + 0.5  # the bucket holds one second's worth


async def test_consecutive_failures_delay_the_path_then_one_probe_tries_again() -> None:
    clock = ManualClock()
    queue, _ = make(clock, QueuePolicy(3, 60.0, 3600.0, 0.0))
    for n in range(4):
        queue.push(delivery(n))
    for _ in range(2):
        first = queue.connecting(clock.now(), THROTTLE)
        assert first is not None
        assert not queue.failed(first, REFUSED, permanent=False, peer=None)
        queue.closed()
    assert len(queue) == 4  # put back, unattempted
    assert queue.refusal(clock.now()) is None
    first = queue.connecting(clock.now(), THROTTLE)
    assert first is not None
    assert queue.failed(first, REFUSED, permanent=False, peer=("192.0.2.1", "mx.test"))
    queue.closed()
    now = clock.now()
    assert queue.open_at(now) == now + 60.0
    refusal = queue.refusal(now)
    assert refusal is not None and refusal.reply == REFUSED and not refusal.permanent
    assert refusal.peer == ("192.0.2.1", "mx.test")
    assert len(queue.drain()) == 4  # the dispatcher defers them, one attempt each
    clock.advance(60.0)
    now = clock.now()
    assert queue.refusal(now) is None
    queue.push(delivery(9))
    assert queue.open_at(now) == now
    assert queue.connecting(now, THROTTLE) == delivery(9)  # the probe
    queue.push(delivery(10))
    assert queue.open_at(now) is None  # one probe at a time
    assert queue.failed(delivery(9), REFUSED, permanent=False, peer=None)  # a failed probe
    queue.closed()
    assert queue.open_at(clock.now()) == clock.now() + 60.0


async def test_a_session_clears_the_failures() -> None:
    clock = ManualClock()
    queue, _ = make(clock, QueuePolicy(3, 60.0, 3600.0, 0.0))
    for n in range(3):
        queue.push(delivery(n))
        first = queue.connecting(clock.now(), THROTTLE)
        assert first is not None
        queue.failed(first, REFUSED, permanent=False, peer=None)
        queue.closed()
    clock.advance(60.0)
    assert queue.connecting(clock.now(), THROTTLE) is not None  # the probe
    queue.opened()
    assert queue.failures == 0 and queue.refusal(clock.now()) is None
    assert queue.open_at(clock.now()) == clock.now()  # no longer one at a time


async def test_a_permanent_failure_delays_at_once() -> None:
    clock = ManualClock()
    queue, _ = make(clock)
    queue.push(delivery(1))
    first = queue.connecting(clock.now(), THROTTLE)
    assert first is not None
    loop = ReplyLine(550, "5.4.6 mail loop")
    assert queue.failed(first, loop, permanent=True, peer=None)
    refusal = queue.refusal(clock.now())
    assert refusal is not None and refusal.permanent and refusal.reply == loop


async def test_a_failing_path_is_remembered_after_its_last_failure() -> None:
    clock = ManualClock()
    queue, _ = make(clock, QueuePolicy(3, 60.0, 3600.0, 0.0))
    queue.push(delivery(1))
    first = queue.connecting(clock.now(), THROTTLE)
    assert first is not None
    failed_at = clock.now()
    queue.failed(first, REFUSED, permanent=False, peer=None)
    queue.closed()
    assert queue.forget_at(clock.now()) is None  # its delivery waits
    queue.drain()
    assert queue.forget_at(clock.now()) == failed_at + 3600.0


async def test_a_pause_holds_new_connections_but_not_idle_ones() -> None:
    clock = ManualClock()
    queue, _ = make(clock)
    idle = asyncio.ensure_future(queue.take(5.0, carry_all))
    await turns()
    queue.put_back(delivery(1), pause=5.0)  # the spool was away
    assert queue.open_at(clock.now()) == clock.now() + 5.0
    await turns()
    assert idle.result() == delivery(1)


async def test_a_connection_whose_next_message_waits_for_its_pacing_closes() -> None:
    clock = ManualClock()
    queue, _ = make(clock)
    queue.push(delivery(1))
    offered: list[str] = []

    async def paced(throttle: str) -> Carry:
        offered.append(throttle)
        return Carry.PACED

    assert await queue.take(5.0, paced) is None  # at once: the clock did not move
    assert offered == [THROTTLE] and len(queue) == 1


# ---- a site's queue: lines of several throttles ---------------------------------------------


def domain_delivery(n: int, domain: str) -> Delivery:
    path = replace(
        PATH,
        throttle_key=("ip", "192.0.2.1", domain),
        destination_host=domain,
        site="mx:mx.site.test",
        site_throttle=("ip", "192.0.2.1", "site", "mx:mx.site.test"),
    )
    job = Job(n, f"m{n}", f"r{n}@{domain}", 0, "s@src.test", 0.0, 1e12, None, None, False)
    return Delivery([job], Deliver(path, None, None))


async def test_a_site_queue_offers_its_lines_oldest_first() -> None:
    clock = ManualClock()
    queue, _ = make(clock)
    a1, b1, a2 = (
        domain_delivery(1, "a.test"),
        domain_delivery(2, "b.test"),
        domain_delivery(3, "a.test"),
    )
    for d in (a1, b1, a2):
        queue.push(d)
    assert [t for t, _ in queue.lines()] == [a1.throttle, b1.throttle]
    offered: list[str] = []

    async def only_b(throttle: str) -> Carry:
        offered.append(throttle)
        return Carry.TAKEN if throttle == b1.throttle else Carry.BUSY

    # a.test's slots are all held elsewhere: the connection carries b.test's mail.
    assert await queue.take(5.0, only_b) == b1
    assert offered == [a1.throttle, b1.throttle]
    queue.push(domain_delivery(4, "b.test"))
    queue.put_back(b1)  # a put back comes first
    assert [t for t, _ in queue.lines()] == [b1.throttle, a1.throttle]
    assert await queue.take(5.0, carry_all, held=a1.throttle) == b1
    assert await queue.take(5.0, carry_all, held=b1.throttle) == a1  # b.test's is younger
    assert queue.count(a1.throttle) == 1 and len(queue) == 2


async def test_a_connection_that_can_carry_nothing_waits_for_a_slot_to_come_free() -> None:
    clock = ManualClock()
    queue, _ = make(clock)
    a1 = domain_delivery(1, "a.test")
    queue.push(a1)
    free = False

    async def when_free(throttle: str) -> Carry:
        return Carry.TAKEN if free else Carry.BUSY

    idle = asyncio.ensure_future(queue.take(5.0, when_free))
    await turns()
    assert not idle.done()  # a.test's slot is held by another connection
    free = True
    queue.may_carry(a1.throttle)  # ... which gave it up
    await turns()
    assert idle.result() == a1  # at once, not after its idle time


async def test_an_arrival_wakes_the_idle_connection_that_holds_its_throttle() -> None:
    clock = ManualClock()
    queue, _ = make(clock)
    a1, b1 = domain_delivery(1, "a.test"), domain_delivery(2, "b.test")
    holds_b = asyncio.ensure_future(queue.take(5.0, carry_all, held=b1.throttle))
    await turns()
    holds_a = asyncio.ensure_future(queue.take(5.0, carry_all, held=a1.throttle))
    await turns()
    queue.push(a1)  # the longest idle holds b.test's slot: the other is woken
    await turns()
    assert holds_a.done() and holds_a.result() == a1
    assert not holds_b.done()
    holds_b.cancel()
