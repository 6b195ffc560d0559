"""Several nodes on one database (SQLite here too, PostgreSQL as in production): a node
that stops while holding claimed work loses nothing, because another node takes the work
once the claims (leases) expire, and no message is delivered twice."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from pathlib import Path

from tests.delivery.conftest import FAST, RunningPlane, eventually
from tests.peers.sink import RecordingSink
from vmta.domain.virtual_mta import Limits, RelayServer
from vmta.runtime.data_plane import DataPlane, DataPlaneSettings
from vmta.runtime.server import bind_listener
from vmta.runtime.settings import Listen
from vmta.store.store import Store
from vmta.store.virtual_mtas import VirtualMtaRepository


async def start_node(store: Store, data_dir: Path, lease_seconds: float) -> RunningPlane:
    await asyncio.to_thread(data_dir.mkdir)
    # release_after: hold the throttled backlog in memory (claimed) rather than giving it
    # back to the spool at once, so that node A really stops with claimed work.
    engine = replace(FAST, lease_seconds=lease_seconds, release_after=1e9)
    settings = DataPlaneSettings(hostname="node.test", engine=engine)
    plane = DataPlane(store, settings, data_dir)
    sock = bind_listener(Listen("127.0.0.1", 0), "SMTP")
    await plane.start(sock)
    return RunningPlane(plane, sock.getsockname()[1], store)


async def test_another_node_delivers_what_a_stopped_node_had_claimed(
    store: Store, tmp_path: Path, sink: RecordingSink
) -> None:
    node_a = await start_node(store, tmp_path / "a", lease_seconds=1.0)
    assert node_a.plane.owner
    relay_id = node_a.add_relay("relay-1", sink.port, throttle_limits=Limits(1, 1))  # 1 an hour
    subjects = [f"m{i}" for i in range(20)]
    for subject in subjects:
        await node_a.asend(f"X-GreenArrow-MtaID: relay-1\r\nSubject: {subject}\r\n\r\nx\r\n")
    await eventually(lambda: sink.messages, what="node A's one message this hour")
    # Node A stops with 19 recipients claimed and waiting for its throttle.
    await node_a.plane.engine.stop(grace=0.1)
    await node_a.plane.stop()
    with store.write() as conn:  # lift the throttle: node B has its own counters
        repo = VirtualMtaRepository(conn)
        relay = repo.get(relay_id)
        assert isinstance(relay, RelayServer)
        relay.throttle_limits = Limits(0, 0)
        repo.update(relay_id, repo.prepare(relay, own_id=relay_id))

    node_b = await start_node(store, tmp_path / "b", lease_seconds=1.0)
    assert node_b.plane.owner != node_a.plane.owner
    try:
        await eventually(lambda: len(sink.messages) >= 20, timeout=30, what="all 20 messages")
        await asyncio.sleep(0.5)
        seen = Counter(
            t.data.split(b"Subject: ")[1].split(b"\r\n")[0].decode() for t in sink.messages
        )
        assert sorted(seen) == sorted(subjects) and set(seen.values()) == {1}
    finally:
        await node_b.plane.stop()
