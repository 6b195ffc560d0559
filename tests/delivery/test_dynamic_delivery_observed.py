"""Dynamic Delivery as the destination sees it. A real MX sink (published by real DNS)
starts answering 421 to most RCPTs; its throttle goes into backoff within the documented
window; the sink then sees at most the backoff limits (one connection, one message a
minute); the Throttles API shows the backoff with its times; ending it through the API,
and separately ``return_after`` running out, give the sink the normal limits again
(several connections at once, no pacing).

The engine runs on a manual clock, and the sink stamps what it sees with that clock, so
"messages per window" is counted in the engine's time: the test moves time, lets the
engine and the sink work (``settle``, bounded), and asserts on the sink's stamps. Every
upper bound comes with a lower bound, so that an engine that did nothing cannot pass."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import TEST_SECRET
from tests.manual_clock import ManualClock
from tests.peers.dns import DnsmasqServer, DnsZone
from tests.peers.sink import RecordingSink
from vmta.api.app import create_app
from vmta.api.ports import ApiPorts
from vmta.delivery.engine.delivery_engine import EngineSettings
from vmta.domain.attempts.retry_schedule import RetrySchedule
from vmta.domain.config.credential import hash_secret
from vmta.domain.config.virtual_mta import IpAddress, Limits, Ref, ThrottleRule, ThrottlingTemplate
from vmta.domain.limits.throttle_backoff import WINDOW_SECONDS
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
BACKOFF_PER_HOUR = 60  # one message a minute
RETURN_AFTER = 600
PROGRAM = ThrottleProgram(
    name="slow down",
    backoff=BackoffLimits(
        max_concurrent_connections=BackoffValue(BackoffMode.FIXED, 1),
        max_messages_per_hour=BackoffValue(BackoffMode.FIXED, BACKOFF_PER_HOUR),
    ),
    return_after=RETURN_AFTER,
    deferral_rate=50,
)
ENGINE = EngineSettings(
    retry=RetrySchedule(backoff=(60.0,), max_lifetime=86_400.0),
    idle_timeout=5.0,
    poll_interval=1.0,
    failure_delay=30.0,
)


@dataclass
class World:
    plane: DataPlane
    clock: ManualClock
    sink: RecordingSink
    api: httpx.AsyncClient
    sent: int = 0

    async def inject(self, local_parts: list[str]) -> None:
        for local in local_parts:
            data = (
                f"X-GreenArrow-MtaID: ip-1\r\nFrom: s@src.test\r\nSubject: {local}\r\n\r\nx\r\n"
            ).encode()
            arrival = Arrival(
                "s@src.test", [f"{local}@a.test"], data, "127.0.0.1", "c", None, False
            )
            await self.plane.intake.accept(arrival)

    async def settle(self) -> None:
        """Let the engine and the sink work until what the sink sees stops changing for a
        few polls (bounded: 3 s of real time)."""
        quiet, last = 0, None
        deadline = time.monotonic() + 3.0
        while quiet < 4 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
            now = (len(self.sink.transactions), len(self.sink.connections), self.sink.open_now)
            quiet = quiet + 1 if now == last else 0
            last = now

    async def run_for(self, seconds: float, step: float) -> None:
        for _ in range(round(seconds / step)):
            self.clock.advance(step)
            await self.settle()

    async def until(self, check: Callable[[], Any], seconds: float, step: float) -> Any:
        """Move the clock until ``check()`` holds; at most ``seconds`` of clock time."""
        for _ in range(round(seconds / step) + 1):
            await self.settle()
            value = check()
            if value:
                return value
            self.clock.advance(step)
        raise AssertionError(f"not reached within {seconds} s of clock time")

    def accepted_between(self, start: float, end: float) -> list[float]:
        return sorted(t.at for t in self.sink.messages if start <= t.at <= end)

    def in_backoff(self) -> list[Any]:
        return self.plane.backoffs.in_backoff(self.clock.now())


# A program that reduces only the connections (the message rate stays unlimited): what
# closes the connections open when it begins is their limit, not their pacing.
CONNECTIONS_ONLY = ThrottleProgram(
    name="fewer connections",
    backoff=BackoffLimits(
        max_concurrent_connections=BackoffValue(BackoffMode.FIXED, 1),
        max_messages_per_hour=BackoffValue(BackoffMode.PERCENT, 100),
    ),
    return_after=RETURN_AFTER,
    deferral_rate=50,
)


@pytest.fixture
async def world(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    dnsmasq: DnsmasqServer,
    sink_factory: Any,
    mx_port: int,
) -> AsyncIterator[World]:
    program = getattr(request, "param", PROGRAM)
    dnsmasq.start(DnsZone().mx("a.test", "mx.a.test", 10).host("mx.a.test", "127.0.0.20"))
    clock = ManualClock(float(int(time.time())))
    sink: RecordingSink = sink_factory(host="127.0.0.20", port=mx_port, clock=clock.now)
    store = Store.open(f"sqlite:///{tmp_path / 'vmta.db'}")
    with store.write() as conn:
        CredentialRepository(conn).put("admin", hash_secret(TEST_SECRET))
        program_id = ThrottleProgramRepository(conn).insert(program)
        template_id = ThrottlingTemplateRepository(conn).insert(
            ThrottlingTemplate(
                name="tmpl",
                default=NORMAL,
                rules=[
                    ThrottleRule(
                        domains=["a.test"], limits=NORMAL, throttle_program=Ref(id=program_id)
                    )
                ],
            )
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
        engine=ENGINE,
        dns_servers=(dnsmasq.address,),
        delivery_port=mx_port,
        delivery_log=False,
        mx_allow_loopback=True,  # the MX sink is on loopback
    )
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    plane = DataPlane(store, settings, data_dir, clock=clock)
    await plane.start(None)
    app = create_app(
        ApiPorts(store, data_plane=None, throttle_states=plane.backoffs, now=clock.now)
    )
    api = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://vmta",
        headers={"Authorization": f"Bearer {TEST_SECRET}"},
    )
    try:
        yield World(plane, clock, sink, api)
    finally:
        await api.aclose()
        await plane.stop()
        store.close()


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds")


async def drive_into_backoff(world: World, batch: str) -> float:
    """The sink answers 421 to 12 of 16 recipients; returns when backoff began, after
    checking it began within the documented window of the first attempts."""
    sink = world.sink
    bad = [f"{batch}-bad{i}" for i in range(12)]
    for local in bad:
        sink.refuse(f"{local}@a.test", "421 4.7.0 Too much mail from you, try again later")
    first_attempt = world.clock.now()
    await world.inject([*bad, *(f"{batch}-good{i}" for i in range(4))])
    [state] = await world.until(world.in_backoff, seconds=WINDOW_SECONDS, step=5.0)
    assert state.backoff is not None
    assert first_attempt <= state.backoff.began_at <= first_attempt + WINDOW_SECONDS
    assert state.backoff.ends_at == state.backoff.began_at + RETURN_AFTER
    return state.backoff.began_at


async def observe_backoff_limits(world: World) -> None:
    """With the destination accepting again but the throttle in backoff, the sink sees
    one connection at a time and messages at least a minute apart."""
    sink = world.sink
    sink.accept_all()
    # Connections opened before backoff close after their message (or when idle).
    await world.until(lambda: sink.open_now <= 1, seconds=30, step=1.0)
    sink.reset_max_concurrent()
    start = world.clock.now()
    await world.inject([f"slow{world.sent + i}" for i in range(20)])
    world.sent += 20
    span, step = 300.0, 4.0  # a message a minute: 4 s steps see every one
    await world.run_for(span, step=step)
    assert sink.max_concurrent <= 1
    seen = sorted((t.at, t.rcpt_tos) for t in sink.messages if start <= t.at <= start + span)
    stamps = [at for at, _ in seen]
    # At most one per minute (plus the one at the start), and some: it delivers, slowly.
    assert 3 <= len(stamps) <= span * BACKOFF_PER_HOUR / 3600 + 1, seen
    # The one at the start may be an earlier batch's message, on the connection that was
    # open when backoff began (its pacing slot taken before): the gaps count from the next.
    new_batch = any(r.startswith("slow") for r in seen[0][1])
    paced = stamps if new_batch else stamps[1:]
    gaps = [b - a for a, b in itertools.pairwise(paced)]
    assert all(gap >= 3600 / BACKOFF_PER_HOUR - step for gap in gaps), seen  # one step late


async def observe_normal_limits(world: World) -> None:
    """Normal limits: a fresh batch goes at once over several connections (up to 4)."""
    sink = world.sink
    sink.reset_max_concurrent()
    sink.data_delay = 0.1  # a busy destination: going faster takes more connections
    start = world.clock.now()
    batch = [f"fast{world.sent + i}" for i in range(20)]
    world.sent += 20
    await world.inject(batch)
    wanted = {f"{local}@a.test" for local in batch}

    def arrived() -> bool:
        got = {r for t in sink.messages for r in t.rcpt_tos}
        return wanted <= got

    await world.until(arrived, seconds=120, step=1.0)
    sink.data_delay = 0.0
    assert 2 <= sink.max_concurrent <= NORMAL.max_concurrent_connections
    # Far more than backoff would let through in these few seconds.
    assert len(world.accepted_between(start, world.clock.now())) >= 20


@pytest.mark.slow(16)
async def test_the_sink_sees_the_backoff_limits_until_end_backoff_and_return_after(
    world: World,
) -> None:
    began = await drive_into_backoff(world, "one")

    # The Throttles API shows it, with its times and its reduced limits.
    answer = (await world.api.get(f"{GA}/throttles_in_backoff")).json()
    assert answer["success"] is True
    [throttle] = answer["data"]["throttles"]
    assert throttle["in_backoff"] is True
    assert throttle["domains"] == ["a.test"]
    assert throttle["backoff_began_at"] == iso(began)
    assert throttle["backoff_ends_at"] == iso(began + RETURN_AFTER)
    assert throttle["backoff_max_concurrent_connections"] == 1
    assert throttle["backoff_max_messages_per_hour"] == BACKOFF_PER_HOUR
    ip_id = throttle["ip_address"]["id"]

    await observe_backoff_limits(world)
    assert world.in_backoff(), "still in backoff: the observation ran inside it"

    # Ended by hand through the API: the normal limits are back at the sink.
    ended = (await world.api.post(f"{GA}/ip_addresses/{ip_id}/throttles/a.test/end_backoff")).json()
    assert ended["data"]["throttle"]["in_backoff"] is False
    assert (await world.api.get(f"{GA}/throttles_in_backoff")).json()["data"]["throttles"] == []
    await observe_normal_limits(world)

    # Into backoff again (fresh evidence), and this time return_after ends it.
    began = await drive_into_backoff(world, "two")
    await observe_backoff_limits(world)
    await world.run_for(began + RETURN_AFTER - world.clock.now(), step=5.0)
    assert (await world.api.get(f"{GA}/throttles_in_backoff")).json()["data"]["throttles"] == []
    await observe_normal_limits(world)


@pytest.mark.parametrize("world", [CONNECTIONS_ONLY], indirect=True)
async def test_connections_open_when_backoff_begins_close_down_to_its_limit(
    world: World,
) -> None:
    sink = world.sink
    gate = threading.Event()
    sink.data_gate = gate  # every connection that reaches DATA stays there, open
    bad = [f"bad{i}" for i in range(12)]
    for local in bad:
        # 451, not 421: a 421 would close the connection, and these must stay open.
        sink.refuse(f"{local}@a.test", "451 4.7.0 Too much mail from you, try again later")
    late = [f"late{i}" for i in range(30)]
    try:
        # Three connections held in DATA first, so that they are open and busy...
        await world.inject([f"held{i}" for i in range(3)])
        await world.until(lambda: sink.open_now >= 3, seconds=30, step=1.0)
        # ... while a fourth meets the deferrals that start the backoff, then waits in
        # DATA with the first late message.
        await world.inject([*bad, *late])
        await world.until(world.in_backoff, seconds=WINDOW_SECONDS, step=1.0)
        assert sink.open_now >= 3  # the held ones: busy when the backoff began
    finally:
        gate.set()
    sink.accept_all()
    wanted = {f"{local}@a.test" for local in late}
    await world.until(
        lambda: wanted <= {r for t in sink.messages for r in t.rcpt_tos}, seconds=300, step=1.0
    )
    # After the message it held, each connection over the limit closed: the late batch
    # went over the one connection the backoff allows (and the one that held its first
    # message, if that was another).
    carriers = [
        c for c in sink.connections if any(set(t.rcpt_tos) & wanted for t in c.transactions)
    ]
    assert len(carriers) <= 2, [len(c.transactions) for c in carriers]
    assert max(len(c.transactions) for c in carriers) >= len(late) - 1
