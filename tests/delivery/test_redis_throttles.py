"""RedisThrottles against the real Redis: several instances stand for several nodes.

What is checked is what Redis holds and what each node was told: slots given out, the
lease scores Redis keeps, the Redis times of the message slots taken.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tests.free_ports import free_port
from tests.peers.redis_db import RedisDb
from vmta.delivery.throttles.redis_throttles import RedisThrottles

MICRO = 1_000_000
Nodes = Callable[..., RedisThrottles]


@pytest.fixture
async def nodes(redis_db: RedisDb) -> AsyncIterator[Nodes]:
    """Makes RedisThrottles on the test's Redis database and namespace; closes them all."""
    made: list[RedisThrottles] = []

    def make(lease_seconds: float = 30.0, namespace: str | None = None) -> RedisThrottles:
        node = RedisThrottles.from_url(
            redis_db.url,
            namespace=namespace or redis_db.namespace,
            lease_seconds=lease_seconds,
            node=f"n{len(made)}",
        )
        made.append(node)
        return node

    yield make
    for node in made:
        await node.close()


async def until(check: Callable[[], Awaitable[bool]], what: str, deadline: float = 10.0) -> None:
    end = time.monotonic() + deadline
    while not await check():
        if time.monotonic() > end:
            pytest.fail(f"gave up after {deadline} s: {what}")
        await asyncio.sleep(0.02)


async def test_simultaneous_acquirers_on_several_nodes_get_exactly_the_limit(
    nodes: Nodes, redis_db: RedisDb
) -> None:
    cluster = [nodes() for _ in range(4)]
    tokens = await asyncio.gather(
        *(node.acquire_connection("relay-1", 3) for node in cluster for _ in range(5))
    )
    assert sum(t is not None for t in tokens) == 3
    with redis_db.client() as client:
        assert client.zcard(f"{redis_db.namespace}:conn:relay-1") == 3


async def test_connection_limit_holds_under_churn_from_several_nodes(nodes: Nodes) -> None:
    cluster = [nodes() for _ in range(4)]
    in_use = 0
    most = 0
    served = 0

    async def worker(node: RedisThrottles) -> None:
        nonlocal in_use, most, served
        for _ in range(40):
            token = await node.acquire_connection("mx:a.test", 3)
            if token is None:
                await asyncio.sleep(0.001)
                continue
            in_use += 1
            most = max(most, in_use)
            served += 1
            await asyncio.sleep(0.002)
            in_use -= 1
            await node.release_connection("mx:a.test", token)

    await asyncio.gather(*(worker(node) for node in cluster for _ in range(4)))
    assert most == 3  # reached, never passed
    assert served > 3
    assert all(node.held() == 0 for node in cluster)


async def test_renew_extends_the_lease_in_redis(nodes: Nodes, redis_db: RedisDb) -> None:
    node = nodes(lease_seconds=30.0)
    token = await node.acquire_connection("k", 1)
    assert token is not None
    with redis_db.client() as client:
        before = client.zscore(f"{redis_db.namespace}:conn:k", token)
        await asyncio.sleep(0.01)  # so that Redis's clock has moved on
        await node.renew()
        after = client.zscore(f"{redis_db.namespace}:conn:k", token)
    assert before is not None and after is not None and after > before


async def test_a_slot_that_is_not_renewed_comes_back_to_the_other_nodes(nodes: Nodes) -> None:
    dead = nodes(lease_seconds=0.3)  # takes both slots, then never renews (as if killed)
    alive = nodes(lease_seconds=0.3)
    assert await dead.acquire_connection("k", 2) is not None
    assert await dead.acquire_connection("k", 2) is not None
    assert await alive.acquire_connection("k", 2) is None

    got: list[str] = []

    async def taken() -> bool:
        token = await alive.acquire_connection("k", 2)
        if token is not None:
            got.append(token)
        return len(got) == 2

    await until(taken, "the dead node's two slots to come back")
    # The dead node, were it to wake up, learns that its slots are gone.
    await dead.renew()
    assert dead.held() == 0


async def test_a_lapsed_lease_is_taken_again_at_renewal_when_there_is_room(
    nodes: Nodes, redis_db: RedisDb
) -> None:
    node = nodes()
    token = await node.acquire_connection("k", 2)
    assert token is not None
    key = f"{redis_db.namespace}:conn:k"
    with redis_db.client() as client:
        client.zadd(key, {token: 0})  # its lease ended (this node could not renew in time)
        await node.renew()
        score = client.zscore(key, token)
        now_s, now_us = client.time()
    assert node.held() == 1
    assert score is not None and score > now_s * MICRO + now_us


async def test_close_gives_the_slots_back_at_once(nodes: Nodes) -> None:
    first, second = nodes(), nodes()
    assert await first.acquire_connection("k", 1) is not None
    assert await second.acquire_connection("k", 1) is None
    await first.close()
    assert await second.acquire_connection("k", 1) is not None


async def test_limit_zero_and_rate_zero_need_no_redis() -> None:
    nowhere = RedisThrottles.from_url(f"redis://127.0.0.1:{free_port()}/0")
    try:
        assert await nowhere.acquire_connection("k", 0) is not None
        assert await nowhere.reserve_message("k", 0) == 0.0
    finally:
        await nowhere.close()


async def test_message_slots_are_spaced_by_the_interval_across_nodes(nodes: Nodes) -> None:
    cluster = [nodes() for _ in range(3)]
    per_hour = 36_000  # one every 0.1 s
    interval_us = 3600 * MICRO // per_hour
    taken: list[float] = []

    async def sender(node: RedisThrottles) -> None:
        while len(taken) < 12:
            wait, at = await node.reserve_message_at("relay-1", per_hour)
            if at is not None:
                taken.append(at)
            else:
                assert 0 < wait <= interval_us / MICRO
                await asyncio.sleep(wait)

    await asyncio.gather(*(sender(node) for node in cluster))
    times = sorted(round(t * MICRO) for t in taken)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) >= 12
    assert min(gaps) >= interval_us


async def test_no_burst_after_idle_and_the_wait_is_the_rest_of_the_interval(
    nodes: Nodes,
) -> None:
    first, second = nodes(), nodes()
    assert await first.reserve_message("relay-1", 1) == 0.0  # first ever: may go now
    wait = await second.reserve_message("relay-1", 1)
    # The next slot is one hour (3600/1 s) after the first, less the time that passed.
    assert 3590 < wait <= 3600
    assert await second.reserve_message("other", 1) == 0.0  # keys are independent


async def test_pacing_survives_a_restart(nodes: Nodes) -> None:
    before = nodes()
    assert await before.reserve_message("relay-1", 2) == 0.0
    await before.close()
    after = nodes()  # the same node started again: the state is in Redis
    assert 1790 < await after.reserve_message("relay-1", 2) <= 1800


async def test_namespaces_do_not_share(nodes: Nodes, redis_db: RedisDb) -> None:
    one = nodes(namespace=f"{redis_db.namespace}-a")
    other = nodes(namespace=f"{redis_db.namespace}-b")
    assert await one.acquire_connection("k", 1) is not None
    assert await other.acquire_connection("k", 1) is not None
    assert await one.reserve_message("k", 1) == 0.0
    assert await other.reserve_message("k", 1) == 0.0


async def test_unreachable_redis_means_wait_and_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    nowhere = RedisThrottles.from_url(f"redis://127.0.0.1:{free_port()}/0", lease_seconds=1)
    try:
        with caplog.at_level(logging.WARNING, logger="vmta.delivery.throttles.redis_throttles"):
            for _ in range(3):
                assert await nowhere.acquire_connection("k", 5) is None
                assert await nowhere.reserve_message("k", 100) == nowhere.unavailable_wait
                await nowhere.renew()
        warnings = [r for r in caplog.records if "Redis throttles unreachable" in r.message]
        assert len(warnings) == 1
        assert nowhere.unavailable_wait > 0
    finally:
        await nowhere.close()


async def test_a_node_with_two_slots_more_than_a_waiting_node_yields_while_the_want_lives(
    nodes: Nodes, redis_db: RedisDb
) -> None:
    """Slots move to where the mail is across nodes too: a node that finds every slot
    taken notes it in Redis for WANT_FRESH seconds, with how many it holds; a node
    holding at least two more gives one up once a connection has nothing to carry."""
    busy, waiting = nodes(), nodes()
    assert all([await busy.acquire_connection("relay-1", 4) for _ in range(3)])
    assert not await busy.yield_to_waiter("relay-1")  # nobody has asked
    assert await waiting.acquire_connection("relay-1", 4)
    assert await waiting.acquire_connection("relay-1", 4) is None  # 3 + 1: all taken
    assert await busy.yield_to_waiter("relay-1")  # 3 against 1
    assert not await waiting.yield_to_waiter("relay-1")  # its own want, and it holds 1
    with redis_db.client() as client:  # the want expires by itself (no sleep here)
        ttl = client.pttl(f"{redis_db.namespace}:want:relay-1")
        assert 0 < ttl <= 2000, ttl
        client.delete(f"{redis_db.namespace}:want:relay-1")
    assert not await busy.yield_to_waiter("relay-1")  # the want is gone
    # A node holding two asks: 3 against 2 is a near-equal share, kept.
    with redis_db.client() as client:
        client.set(f"{redis_db.namespace}:want:relay-1", "n9|2", px=2000)
    assert not await busy.yield_to_waiter("relay-1")


async def test_asking_whether_to_yield_while_redis_is_away_says_no(nodes: Nodes) -> None:
    lost = RedisThrottles.from_url(f"redis://127.0.0.1:{free_port('127.0.0.1')}/0")
    try:
        # As if it held two slots taken before Redis went away (none can be taken now).
        lost._held["t"] = ("relay-1", 4)
        lost._held["u"] = ("relay-1", 4)
        assert not await lost.yield_to_waiter("relay-1")
    finally:
        lost._held.clear()
        await lost.close()
