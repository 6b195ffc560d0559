"""Several nodes on one database (SQLite here too, PostgreSQL as in production): a node
killed while holding claimed work loses nothing, because another node takes the work once
the claims (leases) expire, and no message is delivered twice."""

from __future__ import annotations

import asyncio
import smtplib
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from tests.delivery.conftest import FAST, RunningPlane, eventually
from tests.e2e.serve_process import ServeFactory
from tests.peers.scripted import SILENT, RawServer, smtp_script
from tests.peers.sink import RecordingSink
from vmta.domain.config.virtual_mta import Limits, RelayServer
from vmta.runtime.data_plane import DataPlane
from vmta.runtime.data_plane_settings import DataPlaneSettings
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


def send_all(port: int, subjects: list[str]) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        for subject in subjects:
            message = f"X-GreenArrow-MtaID: relay-1\r\nSubject: {subject}\r\n\r\nx\r\n"
            client.sendmail("s@src.test", ["r@dest.test"], message)


async def test_another_node_delivers_what_a_killed_node_had_claimed(
    store: Store, tmp_path: Path, sink: RecordingSink, raw_server: Any
) -> None:
    """Node A, a real `vmta serve`, claims 20 recipients and is killed (SIGKILL: nothing
    of it runs again, so nothing gives its claims back). Node B delivers them all, once
    each, after A's claims have run out (leases of 2 s)."""
    stuck: RawServer = await raw_server(smtp_script("220 stuck.test", {"MAIL": SILENT}))
    with store.write() as conn:
        repo = VirtualMtaRepository(conn)
        relay = RelayServer(
            name="relay-1",
            source_ip="127.0.0.2",
            source_hostname="out.vmta.test",
            destination_hostname="127.0.0.1",
            destination_port=stuck.port,  # A's one connection hangs at MAIL
            username=None,
            password=None,
            throttle_limits=Limits(1, 0),
        )
        relay_id = repo.insert(repo.prepare(relay, own_id=None))
    (tmp_path / "a").mkdir()
    factory = ServeFactory(tmp_path / "a", store.engine.url.render_as_string(hide_password=False))
    factory.configure(VMTA_CLAIM_LEASE="2")
    try:
        node_a = await asyncio.to_thread(factory.start)
        subjects = [f"m{i}" for i in range(20)]
        await asyncio.to_thread(send_all, factory.smtp_port, subjects)
        await eventually(lambda: stuck.peers, what="node A's connection")

        def claims() -> Counter[str | None]:
            with store.read() as conn:
                rows = conn.exec_driver_sql("select lease_owner, state from recipients").all()
            return Counter(owner if state == "queued" else state for owner, state in rows)

        held = await eventually(lambda: (c := claims()) and None not in c and c, what="claims")
        (owner_a,) = held  # all 20 claimed by node A, none delivered
        assert held[owner_a] == 20
        await asyncio.to_thread(node_a.kill9)
    finally:
        await asyncio.to_thread(factory.close)
    with store.write() as conn:  # the relay now leads to the sink
        repo = VirtualMtaRepository(conn)
        record = repo.get(relay_id)
        assert isinstance(record, RelayServer)
        record.destination_port = sink.port
        repo.update(relay_id, repo.prepare(record, own_id=relay_id))
    assert claims()[owner_a] == 20  # killed: A gave nothing back

    node_b = await start_node(store, tmp_path / "b", lease_seconds=2.0)
    assert node_b.plane.owner != owner_a
    try:
        await eventually(lambda: len(sink.messages) >= 20, timeout=60, what="all 20 messages")
        await eventually(lambda: claims() == {"delivered": 20}, what="every outcome stored")
        seen = Counter(
            t.data.split(b"Subject: ")[1].split(b"\r\n")[0].decode() for t in sink.messages
        )
        assert sorted(seen) == sorted(subjects) and set(seen.values()) == {1}
    finally:
        await node_b.plane.stop()
