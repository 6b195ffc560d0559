"""Two delivery engines, one PostgreSQL database, one Redis namespace, one real MX sink:
a throttle that node A drives into backoff is in backoff on node B too (B's Throttles
API shows it, and what B sends reaches the sink over one connection at a time), and
ending it through B's API gives node A the normal limits again (several connections at
once at the sink). Real time, bounded waits, assertions on what the sink saw."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import TEST_SECRET
from tests.delivery.conftest import FAST, eventually
from tests.peers.dns import DnsmasqServer, DnsZone
from tests.peers.redis_db import RedisDb
from tests.peers.sink import RecordingSink
from vmta.api.app import create_app
from vmta.api.ports import ApiPorts
from vmta.delivery.throttles.redis_backoffs import RedisBackoffs
from vmta.delivery.throttles.redis_throttles import RedisThrottles
from vmta.domain.clock import SystemClock
from vmta.domain.config.credential import hash_secret
from vmta.domain.config.virtual_mta import IpAddress, Limits, Ref, ThrottleRule, ThrottlingTemplate
from vmta.domain.limits.throttle_program import (
    BackoffLimits,
    BackoffMode,
    BackoffValue,
    ThrottleProgram,
)
from vmta.domain.message.arrival import Arrival
from vmta.runtime.data_plane import DataPlane
from vmta.runtime.data_plane_settings import DataPlaneSettings
from vmta.store.credentials import CredentialRepository
from vmta.store.store import Store
from vmta.store.throttle_programs import ThrottleProgramRepository
from vmta.store.throttling_templates import ThrottlingTemplateRepository
from vmta.store.virtual_mtas import VirtualMtaRepository

pytestmark = pytest.mark.peers

GA = "/ga/api/v3/eng"
NORMAL = Limits(max_concurrent_connections=4, max_messages_per_hour=0)
IN_BACKOFF = Limits(max_concurrent_connections=1, max_messages_per_hour=0)
PROGRAM = ThrottleProgram(
    name="one connection",
    backoff=BackoffLimits(
        max_concurrent_connections=BackoffValue(BackoffMode.FIXED, 1),
        max_messages_per_hour=BackoffValue(BackoffMode.PERCENT, 100),
    ),
    return_after=600,
    deferral_rate=50,
)


async def inject(plane: DataPlane, local_parts: list[str]) -> None:
    for local in local_parts:
        data = f"X-GreenArrow-MtaID: ip-1\r\nSubject: {local}\r\n\r\nx\r\n".encode()
        await plane.intake.accept(
            Arrival("s@src.test", [f"{local}@a.test"], data, "127.0.0.1", "c", None, False)
        )


def arrived(sink: RecordingSink, local_parts: list[str]) -> bool:
    got = {r for t in sink.messages for r in t.rcpt_tos}
    return {f"{local}@a.test" for local in local_parts} <= got


@pytest.fixture
async def cluster(
    tmp_path: Path,
    pg_url: str,
    redis_db: RedisDb,
    dnsmasq: DnsmasqServer,
    sink_factory: Any,
    mx_port: int,
) -> AsyncIterator[tuple[list[DataPlane], RecordingSink]]:
    dnsmasq.start(DnsZone().mx("a.test", "mx.a.test", 10).host("mx.a.test", "127.0.0.20"))
    sink: RecordingSink = sink_factory(host="127.0.0.20", port=mx_port)
    store = Store.open(pg_url)
    with store.write() as conn:
        CredentialRepository(conn).put("admin", hash_secret(TEST_SECRET))
        program_id = ThrottleProgramRepository(conn).insert(PROGRAM)
        rule = ThrottleRule(domains=["a.test"], limits=NORMAL, throttle_program=Ref(id=program_id))
        template_id = ThrottlingTemplateRepository(conn).insert(
            ThrottlingTemplate(name="tmpl", default=NORMAL, rules=[rule])
        )
        repo = VirtualMtaRepository(conn)
        ip = IpAddress(
            name="ip-1",
            ip="127.0.0.2",
            hostname="ip-1.vmta.test",
            throttling_template=Ref(id=template_id),
        )
        repo.insert(repo.prepare(ip, own_id=None))
    settings = DataPlaneSettings(
        hostname="vmta.test",
        engine=replace(FAST, idle_timeout=0.3),
        dns_servers=(dnsmasq.address,),
        delivery_port=mx_port,
        delivery_log=False,
        mx_allow_loopback=True,  # the MX sink is on loopback
    )
    planes = []
    for name in ("a", "b"):
        clock = SystemClock()
        data_dir = tmp_path / name
        data_dir.mkdir()
        plane = DataPlane(
            store,
            settings,
            data_dir,
            clock=clock,
            throttles=RedisThrottles.from_url(redis_db.url, namespace=redis_db.namespace),
            backoffs=RedisBackoffs.from_url(
                redis_db.url, clock, namespace=redis_db.namespace, sync_interval=0.1
            ),
        )
        await plane.start(None)
        planes.append(plane)
    try:
        yield planes, sink
    finally:
        for plane in planes:
            await plane.stop()
        store.close()


def api_of(plane: DataPlane) -> httpx.AsyncClient:
    app = create_app(
        ApiPorts(plane.store, data_plane=None, throttle_states=plane.backoffs, now=plane.clock.now)
    )
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://vmta",
        headers={"Authorization": f"Bearer {TEST_SECRET}"},
    )


async def test_backoff_on_one_node_holds_on_the_other_and_ends_everywhere(
    cluster: tuple[list[DataPlane], RecordingSink],
) -> None:
    (a, b), sink = cluster
    bad = [f"bad{i}" for i in range(12)]
    for local in bad:
        sink.refuse(f"{local}@a.test", "421 4.7.0 Too much mail, try again later")
    first = [*bad, *(f"good{i}" for i in range(4))]
    await inject(a, first)
    [state] = await eventually(
        lambda: a.backoffs.in_backoff(a.clock.now()), timeout=30, what="backoff on node A"
    )
    key = state.key

    # Node B, which sent nothing yet, applies it and its API shows it.
    await eventually(
        lambda: b.backoffs.limits(key, NORMAL, b.clock.now()) == IN_BACKOFF,
        what="node B in backoff",
    )
    async with api_of(b) as api_b:
        [shown] = (await api_b.get(f"{GA}/throttles_in_backoff")).json()["data"]["throttles"]
        assert shown["id"] == state.id and shown["in_backoff"] is True
        assert shown["backoff_max_concurrent_connections"] == 1
        assert shown["normal_max_concurrent_connections"] == 4

        # The destination recovers; the throttle stays in backoff. What B sends goes
        # over one connection at a time (the slot is the cluster's, in Redis).
        sink.accept_all()
        await eventually(lambda: arrived(sink, first), timeout=60, what="A's retries")
        await eventually(lambda: sink.open_now == 0, what="idle connections closed")
        sink.reset_max_concurrent()
        sink.data_delay = 0.1  # a busy destination: going faster takes more connections
        slow = [f"slow{i}" for i in range(16)]
        await inject(b, slow)
        await eventually(lambda: arrived(sink, slow), timeout=60, what="B's batch")
        assert sink.max_concurrent == 1

        # Ended through node B's API: node A is back to its normal limits.
        ip_id = shown["ip_address"]["id"]
        answer = await api_b.post(f"{GA}/ip_addresses/{ip_id}/throttles/a.test/end_backoff")
        assert answer.json()["data"]["throttle"]["in_backoff"] is False
    await eventually(
        lambda: a.backoffs.limits(key, NORMAL, a.clock.now()) == NORMAL,
        what="node A out of backoff",
    )
    async with api_of(a) as api_a:
        listed = (await api_a.get(f"{GA}/throttles_in_backoff")).json()["data"]["throttles"]
        assert listed == []
    await eventually(lambda: sink.open_now == 0, what="idle connections closed")
    sink.reset_max_concurrent()
    fast = [f"fast{i}" for i in range(24)]  # still answered 0.1 s after each DATA
    await inject(a, fast)
    await eventually(lambda: arrived(sink, fast), timeout=60, what="A's batch")
    assert 2 <= sink.max_concurrent <= NORMAL.max_concurrent_connections
