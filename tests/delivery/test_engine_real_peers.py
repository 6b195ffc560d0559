"""The engine's adversity rules against real peers, in real time: a relay that hangs up
on connect, a low hourly limit against a receiver that closes idle sessions after a
second, and an operator deleting mail through the API while it is being delivered."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

from tests.delivery.conftest import API_LOGIN, FAST, RunningPlane, eventually
from tests.peers.scripted import CLOSE, RawServer, smtp_script
from tests.peers.sink import RecordingSink
from vmta.domain.config.virtual_mta import Limits


async def test_a_relay_that_hangs_up_on_connect_gets_a_bounded_connection_rate(
    plane_factory: Any, raw_server: Any
) -> None:
    server: RawServer = await raw_server(smtp_script(CLOSE, {}))
    plane: RunningPlane = await plane_factory(engine=replace(FAST, failure_delay=2.0))
    plane.add_relay("dead", server.port, throttle_limits=Limits(5, 0))
    plane.set_default("dead")
    ids = [await plane.asend(f"Subject: m{i}\r\n\r\nx\r\n") for i in range(30)]
    started = time.monotonic()
    await asyncio.sleep(5.0)  # two and a half delays
    elapsed = time.monotonic() - started
    connections = len(server.peers)
    # Three failures delay the path for 2 s, then one probe: a handful, not thousands.
    assert 3 <= connections <= elapsed / 2 * 2 + 4, connections
    now = time.time()
    for queue_id in ids:
        view = plane.message(queue_id)
        assert view.attempts, queue_id  # every waiting recipient got an attempt recorded
        (recipient,) = view.recipients
        assert recipient["state"] == "queued"
        assert recipient["next_attempt_at"] > now - 1.0  # on the retry schedule


async def test_a_low_hourly_limit_delivers_everything_on_the_first_attempt(
    plane_factory: Any, sink_factory: Any
) -> None:
    sink: RecordingSink = sink_factory(idle_timeout=0.5)  # hangs up on idle sessions
    plane: RunningPlane = await plane_factory(engine=replace(FAST, idle_timeout=5.0))
    plane.add_relay("paced", sink.port, throttle_limits=Limits(2, 3600))  # one a second
    plane.set_default("paced")
    ids = [await plane.asend(f"Subject: m{i}\r\n\r\nx\r\n") for i in range(5)]
    await eventually(lambda: len(sink.messages) == 5, timeout=40, what="five paced messages")
    for queue_id in ids:
        view = await eventually(
            lambda q=queue_id: (
                (m := plane.message(q)) and m.recipients[0]["state"] == "delivered" and m
            )
        )
        assert [a["outcome"] for a in view.attempts] == ["delivered"]  # the first attempt
    assert sink.max_concurrent == 1  # the pacer feeds one connection at a time


async def test_deleting_messages_in_flight_never_wedges_the_path(
    plane_factory: Any, sink: RecordingSink
) -> None:
    import httpx

    from vmta.api.app import create_app
    from vmta.api.ports import ApiPorts

    plane: RunningPlane = await plane_factory()
    plane.add_relay("relay", sink.port, throttle_limits=Limits(1, 0))
    plane.set_default("relay")
    app = create_app(ApiPorts(plane.store, data_plane=None))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://vmta") as api:
        ids = [await plane.asend(f"Subject: m{i}\r\n\r\nx\r\n") for i in range(40)]
        deleted = ids[5:35:3]
        at_sink_when_deleted: dict[str, int] = {}
        for queue_id in deleted:  # while the first ones are being delivered
            answer = await api.delete(f"/api/messages/{queue_id}", auth=API_LOGIN)
            assert answer.status_code in (200, 204), answer.text
            at_sink_when_deleted[queue_id] = len(sink.messages)
        survivors = len(ids) - len(deleted)
        await eventually(lambda: len(sink.messages) >= survivors, timeout=30, what="the rest")
        late = await plane.asend("Subject: late\r\n\r\nx\r\n")
        await eventually(lambda: plane.message(late).recipients[0]["state"] == "delivered")
    subjects = [t.data.split(b"Subject: ")[1].split(b"\r\n")[0].decode() for t in sink.messages]
    assert len(subjects) == len(set(subjects))  # none twice
    kept = {f"m{i}" for i, queue_id in enumerate(ids) if queue_id not in deleted}
    assert kept | {"late"} <= set(subjects)
    # A deleted message reaches the sink only if it was already on the wire when it was
    # deleted: one connection sends one message at a time and reads each body from the
    # spool just before sending it, so the sink had every message before it by then.
    for i, queue_id in enumerate(ids):
        if queue_id in deleted and f"m{i}" in subjects:
            position = subjects.index(f"m{i}")  # messages before it at the sink
            assert at_sink_when_deleted[queue_id] >= position, (i, position)
    # Outcomes commit after the sink has the message: wait for the last ones.
    await eventually(lambda: plane.plane.engine.in_memory == 0, what="nothing left in memory")
