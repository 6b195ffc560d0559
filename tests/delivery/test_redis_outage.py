"""Redis away (a TCP forwarder of the test's own in front of the real Redis refuses
connections; Redis itself is never stopped): a path with no limit delivers without
asking Redis; a limited one waits, with the reason shown, and goes once Redis is back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from yarl import URL

from tests.delivery.conftest import FAST, RunningPlane, eventually
from tests.peers.forwarder import TcpForwarder
from tests.peers.redis_db import RedisDb
from vmta.delivery.throttles.redis_throttles import RedisThrottles
from vmta.domain.config.virtual_mta import Limits
from vmta.runtime.data_plane import DataPlane
from vmta.runtime.data_plane_settings import DataPlaneSettings
from vmta.runtime.server import bind_listener
from vmta.runtime.settings import Listen
from vmta.store.store import Store

pytestmark = [pytest.mark.peers, pytest.mark.one_database]

MESSAGE = "From: sender@src.test\r\nSubject: hi\r\n\r\nbody\r\n"


@pytest.fixture
async def redis_away(
    store: Store, tmp_path: Path, redis_db: RedisDb
) -> AsyncIterator[tuple[RunningPlane, TcpForwarder, RedisThrottles]]:
    real = URL(redis_db.url)
    with TcpForwarder(real.host or "127.0.0.1", real.port or 6379) as forwarder:
        forwarder.refuse()
        throttles = RedisThrottles.from_url(
            str(real.with_port(forwarder.port)), namespace=redis_db.namespace
        )
        throttles.unavailable_wait = 0.2
        data_dir = tmp_path / "plane"
        data_dir.mkdir()
        plane = DataPlane(
            store,
            DataPlaneSettings(hostname="vmta.test", engine=FAST),
            data_dir,
            throttles=throttles,
        )
        sock = bind_listener(Listen("127.0.0.1", 0), "SMTP")
        await plane.start(sock)
        try:
            yield RunningPlane(plane, sock.getsockname()[1], store), forwarder, throttles
        finally:
            forwarder.restore()
            await plane.stop()


async def test_an_unlimited_path_delivers_with_redis_away_and_a_limited_one_waits(
    redis_away: tuple[RunningPlane, TcpForwarder, RedisThrottles], sink_factory: Any
) -> None:
    plane, forwarder, _throttles = redis_away
    free_sink, limited_sink = sink_factory(), sink_factory()
    plane.add_relay("free", free_sink.port)  # Limits(0, 0): no limit
    plane.add_relay(
        "limited", limited_sink.port, source_ip="127.0.0.3", throttle_limits=Limits(2, 0)
    )
    plane.set_default("free")
    for _ in range(3):
        await plane.asend(MESSAGE)
    await eventually(lambda: len(free_sink.messages) == 3, what="unlimited deliveries")
    assert forwarder.accepted == 0  # Redis was never asked

    plane.set_default("limited")
    await plane.asend(MESSAGE)

    def shown() -> Any:
        link = plane.plane.dependencies().get("redis_throttles")
        return link and link["state"] == "down" and link

    link = await eventually(shown, what="the wait shown")
    assert "Redis" in link["last_error"]
    assert limited_sink.messages == []
    assert forwarder.accepted >= 1  # the limited path asked (and was refused)
    forwarder.restore()
    await eventually(lambda: len(limited_sink.messages) == 1, what="the limited delivery")
    assert plane.plane.dependencies()["redis_throttles"]["state"] == "up"
