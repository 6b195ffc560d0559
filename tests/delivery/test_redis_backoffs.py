"""Dynamic Delivery backoff shared through the real Redis: several ``RedisBackoffs`` stand
for several nodes (one namespace per test), on one manual clock. What is checked is what
each node applies (its limits, its Throttles view) and what Redis holds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from tests.free_ports import free_port
from tests.manual_clock import ManualClock
from tests.peers.redis_db import RedisDb
from vmta.delivery.throttles.backoff_record import decode
from vmta.delivery.throttles.redis_backoffs import RedisBackoffs
from vmta.delivery.throttles.throttle_backoffs import ThrottleBackoffs
from vmta.domain.config.virtual_mta import Limits
from vmta.domain.limits.throttle_identity import ThrottleOrigin
from vmta.domain.limits.throttle_program import (
    BackoffLimits,
    BackoffMode,
    BackoffValue,
    ThrottleProgram,
)
from vmta.runtime.settings import Settings
from vmta.runtime.throttle_wiring import throttle_backoffs

PROGRAM = ThrottleProgram(
    name="p",
    backoff=BackoffLimits(
        BackoffValue(BackoffMode.FIXED, 1), BackoffValue(BackoffMode.PERCENT, 50)
    ),
    return_after=600,
    deferral_rate=50,
    id=7,
)
NORMAL = Limits(4, 100)
REDUCED = Limits(1, 50)
KEY = ("ip", "127.0.0.2", "domain", "a.test")
ORIGIN = ThrottleOrigin(3, "ip-1", "throttling_template", 41, 9, "tpl", ("a.test",), NORMAL)
Nodes = Callable[..., RedisBackoffs]


@pytest.fixture
async def nodes(redis_db: RedisDb) -> AsyncIterator[Nodes]:
    made: list[RedisBackoffs] = []

    def make(clock: ManualClock, url: str | None = None) -> RedisBackoffs:
        node = RedisBackoffs.from_url(
            url or redis_db.url, clock, namespace=redis_db.namespace, min_attempts=4
        )
        made.append(node)
        return node

    yield make
    for node in made:
        await node.close()


async def into_backoff(node: RedisBackoffs, clock: ManualClock, program: ThrottleProgram) -> None:
    for _ in range(4):
        node.observe(KEY, program, "deferred", clock.now(), origin=ORIGIN)
    await node.settle()


async def test_backoff_begun_on_one_node_applies_on_every_node(
    nodes: Nodes, redis_db: RedisDb
) -> None:
    clock = ManualClock()
    a, b = nodes(clock), nodes(clock)
    await into_backoff(a, clock, PROGRAM)
    assert a.limits(KEY, NORMAL, clock.now()) == REDUCED

    with redis_db.client() as client:
        assert client.smembers(a.index_key) == {b'["ip","127.0.0.2","domain","a.test"]'}
        stored = client.get(a.record_key(KEY))
        ttl_ms = client.pttl(a.record_key(KEY))
    assert stored is not None and 590_000 < ttl_ms <= 600_000  # Redis forgets it in time
    decoded = decode(stored.decode())
    assert decoded is not None
    assert decoded[0].began_at == clock.now() and decoded[0].ends_at == clock.now() + 600

    # Node B never sent through the throttle: after a sync it applies the same backoff
    # and can show where the throttle comes from.
    assert b.limits(KEY, NORMAL, clock.now()) == NORMAL
    await b.refresh()
    assert b.limits(KEY, NORMAL, clock.now()) == REDUCED
    [shown_a] = a.in_backoff(clock.now())
    [shown_b] = b.in_backoff(clock.now())
    assert shown_b == shown_a  # same id, origin, times and reduced limits
    assert shown_b.origin == ORIGIN and shown_b.limits == REDUCED
    assert [s.key for s in b.of_ip_address(3, clock.now())] == [KEY]


async def test_ending_on_any_node_ends_it_everywhere(nodes: Nodes, redis_db: RedisDb) -> None:
    clock = ManualClock()
    a, b = nodes(clock), nodes(clock)
    await into_backoff(a, clock, PROGRAM)
    await b.refresh()
    assert await b.end_everywhere(KEY) is True
    assert b.limits(KEY, NORMAL, clock.now()) == NORMAL
    with redis_db.client() as client:
        assert client.exists(a.record_key(KEY)) == 0
    assert a.limits(KEY, NORMAL, clock.now()) == REDUCED  # until its next sync
    await a.refresh()
    assert a.limits(KEY, NORMAL, clock.now()) == NORMAL
    assert a.in_backoff(clock.now()) == [] and b.in_backoff(clock.now()) == []
    assert await a.end_everywhere(KEY) is False  # in backoff nowhere

    # The engine's synchronous end_backoff reaches Redis too.
    await into_backoff(b, clock, PROGRAM)
    await a.refresh()
    assert a.end_backoff(KEY) is True
    await a.settle()
    await b.refresh()
    assert b.limits(KEY, NORMAL, clock.now()) == NORMAL


async def test_return_after_ends_it_on_every_node_by_their_clock(nodes: Nodes) -> None:
    clock = ManualClock()
    a, b = nodes(clock), nodes(clock)
    await into_backoff(a, clock, PROGRAM)
    await b.refresh()
    clock.advance(599)
    await b.refresh()
    assert b.limits(KEY, NORMAL, clock.now()) == REDUCED
    clock.advance(1)
    await b.refresh()
    assert b.limits(KEY, NORMAL, clock.now()) == NORMAL
    assert a.limits(KEY, NORMAL, clock.now()) == NORMAL
    # A backoff whose time is up by the nodes' clock is replaced by the next one.
    for _ in range(4):
        b.observe(KEY, PROGRAM, "failed", clock.now(), origin=ORIGIN)
    await b.settle()
    assert b.limits(KEY, NORMAL, clock.now()) == NORMAL  # failures: no failure_rate trigger
    await into_backoff(b, clock, PROGRAM)
    await a.refresh()
    [state] = a.in_backoff(clock.now())
    assert state.backoff is not None and state.backoff.began_at == clock.now()


async def test_the_redis_ttl_ends_it_when_its_time_is_up(nodes: Nodes, redis_db: RedisDb) -> None:
    clock = ManualClock()
    a, b = nodes(clock), nodes(clock)
    quick = ThrottleProgram(name="quick", backoff=PROGRAM.backoff, return_after=1, deferral_rate=50)
    await into_backoff(a, clock, quick)
    with redis_db.client() as client:
        deadline = time.monotonic() + 10
        while client.exists(a.record_key(KEY)):  # Redis expires it after ~1 s real time
            assert time.monotonic() < deadline, "Redis kept the backoff past its TTL"
            await asyncio.sleep(0.05)
        await b.refresh()
        assert b.in_backoff(clock.now()) == []  # b's clock has not moved: Redis decided
        assert client.smembers(a.index_key) == set()  # the read dropped the stale member


async def test_two_nodes_deciding_keep_the_first_backoff(nodes: Nodes) -> None:
    clock = ManualClock()
    a, b = nodes(clock), nodes(clock)
    await into_backoff(a, clock, PROGRAM)
    first = a.in_backoff(clock.now())[0].backoff
    clock.advance(30)
    await into_backoff(b, clock, PROGRAM)  # b had not synced: it decides on its own
    [state] = b.in_backoff(clock.now())
    assert state.backoff == first  # Redis kept a's, and b took it


async def test_a_change_made_while_reading_is_not_undone(nodes: Nodes) -> None:
    clock = ManualClock()
    a = nodes(clock)
    reading = asyncio.create_task(a.refresh())
    await asyncio.sleep(0)  # the read is under way
    for _ in range(4):
        a.observe(KEY, PROGRAM, "deferred", clock.now(), origin=ORIGIN)
    await reading
    assert a.limits(KEY, NORMAL, clock.now()) == REDUCED
    await a.settle()
    await a.refresh()
    assert a.limits(KEY, NORMAL, clock.now()) == REDUCED


class Forwarder:
    """A TCP forwarder to Redis that can be taken down and up again on one port."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
            dst.close()

        await asyncio.gather(
            pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True
        )


async def test_without_redis_a_node_keeps_its_own_decisions_and_publishes_later(
    nodes: Nodes, redis_db: RedisDb
) -> None:
    clock = ManualClock()
    forwarder = Forwarder(int(redis_db.url.rsplit(":", 1)[1].split("/")[0]))
    await forwarder.start()
    database = redis_db.url.rsplit("/", 1)[1]
    a = nodes(clock, url=f"redis://127.0.0.1:{forwarder.port}/{database}")
    b = nodes(clock)
    await a.refresh()  # connected once
    await forwarder.stop()

    await into_backoff(a, clock, PROGRAM)  # Redis is gone: the write fails, no exception
    await a.refresh()
    assert a.limits(KEY, NORMAL, clock.now()) == REDUCED  # its own decision stands
    await b.refresh()
    assert b.limits(KEY, NORMAL, clock.now()) == NORMAL

    await forwarder.start()
    await a.refresh()  # Redis answers again: a publishes what it decided meanwhile
    await b.refresh()
    assert b.limits(KEY, NORMAL, clock.now()) == REDUCED
    await forwarder.stop()


def test_the_backend_follows_the_redis_setting(redis_db: RedisDb) -> None:
    clock = ManualClock()
    alone = throttle_backoffs(Settings(), clock)
    assert type(alone) is ThrottleBackoffs
    shared = throttle_backoffs(
        Settings(redis_url=redis_db.url, redis_namespace=redis_db.namespace), clock
    )
    assert isinstance(shared, RedisBackoffs) and shared.namespace == redis_db.namespace
    asyncio.run(shared.close())
