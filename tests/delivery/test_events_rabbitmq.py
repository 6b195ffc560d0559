"""Delivery results reach the real RabbitMQ at 127.0.0.1:5672 in MailerQ's result JSON:
a consumer reads them from ``results`` and ``success``, ``failure`` or ``retry``. Queue
names are unique per test."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest
from yarl import URL

from tests.conftest import skip_or_fail
from tests.delivery.conftest import RunningPlane, api_client, eventually
from vmta.delivery.events.event_sender import SenderSettings
from vmta.delivery.events.event_setup import EventSettings

AMQP_URL = os.environ.get("VMTA_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
QUICK = SenderSettings(poll_interval=0.05, retry_initial=0.05, retry_max=0.2)
MESSAGE = "X-GreenArrow-MtaID: relay-1\r\nFrom: sender@src.test\r\nSubject: hi\r\n\r\nbody\r\n"
KINDS = ("results", "success", "failure", "retry")


@pytest.fixture
async def broker() -> AsyncIterator[aio_pika.abc.AbstractConnection]:
    try:
        connection = await aio_pika.connect(AMQP_URL, timeout=5)
    except Exception as exc:
        skip_or_fail(f"RabbitMQ not reachable at {AMQP_URL}: {exc}")
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def queues(broker: aio_pika.abc.AbstractConnection) -> AsyncIterator[dict[str, str]]:
    tag = uuid.uuid4().hex[:10]
    names = {kind: f"vmta-test-{kind}-{tag}" for kind in KINDS}
    yield names
    channel = await broker.channel()
    for name in names.values():
        await channel.queue_delete(name)
    await channel.close()


async def drain(broker: aio_pika.abc.AbstractConnection, queue: str) -> list[dict[str, Any]]:
    """Every message in ``queue`` now, acknowledged (a consumer taking its results). A
    queue a test declared with arguments of its own is used as it is."""
    channel = await broker.channel()
    try:
        try:
            declared = await channel.declare_queue(queue, durable=True)
        except aio_pika.exceptions.ChannelPreconditionFailed:
            channel = await broker.channel()
            declared = await channel.declare_queue(queue, passive=True)
        bodies: list[dict[str, Any]] = []
        while (message := await declared.get(fail=False)) is not None:
            assert message.content_type == "application/json"
            bodies.append(json.loads(message.body))
            await message.ack()
        return bodies
    finally:
        await channel.close()


async def collect(
    broker: aio_pika.abc.AbstractConnection, queues: dict[str, str], until: Any
) -> dict[str, list[dict[str, Any]]]:
    got: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    deadline = time.monotonic() + 20
    while not until(got):
        assert time.monotonic() < deadline, f"timed out; have {got}"
        for kind in KINDS:
            got[kind] += await drain(broker, queues[kind])
        await asyncio.sleep(0.05)
    return got


async def amqp_plane(plane_factory: Any, queues: dict[str, str], url: str = AMQP_URL) -> Any:
    events = EventSettings(rabbitmq_url=url, rabbitmq_queues=queues, sender=QUICK)
    plane: RunningPlane = await plane_factory(events=events)
    return plane


async def test_retry_then_success_results(
    plane_factory: Any, sink_factory: Any, broker: Any, queues: dict[str, str]
) -> None:
    plane = await amqp_plane(plane_factory, queues)
    sink = sink_factory()
    sink.script("RCPT", "451 4.7.1 Greylisted")
    plane.add_relay("relay-1", sink.port)
    queue_id = await plane.asend(MESSAGE)

    got = await collect(broker, queues, lambda g: g["success"] and g["results"])
    (retry,) = got["retry"]
    (success,) = got["success"]
    assert got["results"] == [success]  # final results only; the retry went to "retry"
    assert got["failure"] == []
    assert success["envelope"] == "sender@src.test"
    assert success["recipient"] == "rcpt@dest.test"
    assert success["vmta_queue_id"] == queue_id
    assert "mime" not in success
    # MailerQ's vocabularies: where the attempt ended, and how.
    assert [(r["code"], r["state"], r["result"]) for r in success["results"]] == [
        (451, "rcptto", "error"),
        (250, "message", "accepted"),
    ]
    assert all(r["mta"] == "127.0.0.1" for r in success["results"])
    assert success["results"][0]["status"] == "4.7.1"
    assert success["results"][1]["from"] == "127.0.0.2"
    assert success["results"][1]["to"] == "127.0.0.1"
    assert [r["code"] for r in retry["results"]] == [451]
    assert retry["results"][0]["description"] == "Greylisted"


async def test_failure_results(
    plane_factory: Any, sink_factory: Any, broker: Any, queues: dict[str, str]
) -> None:
    plane = await amqp_plane(plane_factory, queues)
    sink = sink_factory()
    sink.refuse("gone@dest.test", "550 5.1.1 No such user")
    plane.add_relay("relay-1", sink.port)
    queue_id = await plane.asend(MESSAGE, recipients=["gone@dest.test"])

    def done(g: dict[str, list[dict[str, Any]]]) -> bool:
        return any(m["vmta_queue_id"] == queue_id for m in g["failure"]) and bool(g["results"])

    got = await collect(broker, queues, done)
    failure = next(m for m in got["failure"] if m["vmta_queue_id"] == queue_id)
    assert failure in got["results"]
    assert failure["recipient"] == "gone@dest.test"
    (result,) = failure["results"]
    assert (result["code"], result["status"], result["description"]) == (
        550,
        "5.1.1",
        "No such user",
    )
    assert got["success"] == [] or all(m["vmta_queue_id"] != queue_id for m in got["success"])


async def test_broker_down_keeps_results_waiting(
    plane_factory: Any, sink_factory: Any, queues: dict[str, str]
) -> None:
    plane = await amqp_plane(plane_factory, queues, url="amqp://guest:secret-pw@127.0.0.1:1/")
    sink = sink_factory()
    plane.add_relay("relay-1", sink.port)
    await plane.asend(MESSAGE)

    def waiting() -> Any:
        status = plane.plane.events.outbox.status(time.time())
        return status and status[0].backlog == 1 and status[0].last_error and status[0]

    status = await eventually(waiting, what="the result waiting, with the error")
    assert status.name == "rabbitmq"
    assert "secret-pw" not in (status.last_error or "")
    assert "amqp://127.0.0.1:1/" in (status.last_error or "")


async def test_a_message_injected_as_mailerq_json_gets_its_json_back(
    plane_factory: Any, sink_factory: Any, broker: Any, queues: dict[str, str]
) -> None:
    """POST /v1/inject on a real API listener: the result carries every key of the
    message's JSON but ``mime`` (its own ones too), and its ``queues`` object is obeyed."""
    plane = await amqp_plane(plane_factory, queues)
    sink = sink_factory()
    plane.add_relay("relay-1", sink.port)
    own_success = f"{queues['success']}-own"
    queues["own-success"] = own_success  # deleted with the others at the end
    document = {
        "envelope": "bounces@src.test",
        "recipient": "json@dest.test",
        "mime": MESSAGE,
        "tags": ["welcome", "2026-12"],
        "maxattempts": 3,
        "queues": {"success": own_success},
        "data": {"customer": 4711, "name": "Jane"},
        "custom-id": "order-99",
    }
    async with api_client(plane) as client:
        response = await client.post("/v1/inject", json=document)
    assert response.status_code == 200, response.text
    queue_id = response.json()["id"]

    def delivered(g: dict[str, list[dict[str, Any]]]) -> bool:
        return bool(g["results"])

    got = await collect(broker, queues, delivered)
    (result,) = got["results"]
    assert got["success"] == []  # the message named its own success queue
    (own,) = await drain(broker, own_success)
    assert own == result
    for key, value in document.items():
        if key != "mime":
            assert result[key] == value, key
    assert "mime" not in result
    assert result["vmta_queue_id"] == queue_id
    assert [(r["code"], r["state"], r["result"]) for r in result["results"]] == [
        (250, "message", "accepted")
    ]


async def test_x_mq_headers_come_back_as_keys(
    plane_factory: Any, sink_factory: Any, broker: Any, queues: dict[str, str]
) -> None:
    """SMTP injection with x-mq-* headers: their keys are in the result, as MailerQ turns
    them into JSON properties; x-mq-retry-queue names the queue of the deferral."""
    plane = await amqp_plane(plane_factory, queues)
    sink = sink_factory()
    sink.script("RCPT", "451 4.7.1 Greylisted")
    plane.add_relay("relay-1", sink.port)
    own_retry = f"{queues['retry']}-own"
    queues["own-retry"] = own_retry
    message = (
        "X-GreenArrow-MtaID: relay-1\r\n"
        "x-mq-tag: spring\r\n"
        "x-mq-maxattempts: 5\r\n"
        "x-mq-custom-id: order-7\r\n"
        f"x-mq-retry-queue: {own_retry}\r\n"
        "From: sender@src.test\r\nSubject: hi\r\n\r\nbody\r\n"
    )
    queue_id = await plane.asend(message)

    got = await collect(broker, queues, lambda g: g["success"] and g["results"])
    assert got["retry"] == []  # the deferral went to the message's own retry queue
    (retry,) = await drain(broker, own_retry)
    (success,) = got["success"]
    for result in (retry, success):
        assert result["vmta_queue_id"] == queue_id
        assert result["tags"] == ["spring"]
        assert result["maxattempts"] == "5"
        assert result["custom-id"] == "order-7"
        assert result["retry-queue"] == own_retry
        assert result["recipient"] == "rcpt@dest.test"
        assert result["envelope"] == "sender@src.test"
    assert [r["code"] for r in success["results"]] == [451, 250]
    assert b"x-mq-" not in sink.messages[0].data.lower()


class BrokerDoor:
    """A TCP relay in front of the real RabbitMQ: while shut, nothing listens on its port
    (the broker is down for vmta); opened, it passes bytes both ways to 127.0.0.1:5672.

    The port stays bound (not listening) while shut, so a connection to it is refused and
    no other process's outbound connection can take it as its source port meanwhile."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        upstream = URL(AMQP_URL)

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()

        async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            up_reader, up_writer = await asyncio.open_connection(upstream.host, upstream.port)
            for task in (pipe(reader, up_writer), pipe(up_reader, writer)):
                self._pipes.add(asyncio.ensure_future(task))

        self._server = await asyncio.start_server(relay, sock=self._socket)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self._socket.close()
        for task in self._pipes:
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)


async def test_results_wait_while_the_broker_is_down_then_all_arrive_once(
    plane_factory: Any, sink_factory: Any, broker: Any, queues: dict[str, str]
) -> None:
    door = BrokerDoor()  # shut: vmta's broker is down
    url = str(URL(AMQP_URL).with_host("127.0.0.1").with_port(door.port))
    plane = await amqp_plane(plane_factory, queues, url=url)
    sink = sink_factory()
    plane.add_relay("relay-1", sink.port)
    ids = [await plane.asend(MESSAGE) for _ in range(4)]
    await eventually(lambda: len(sink.messages) == 4, what="mail is delivered all the same")

    def waiting() -> Any:
        status = plane.plane.events.outbox.status(time.time())
        return status and status[0].backlog == 4 and status[0].last_error and status[0]

    await eventually(waiting, what="four results waiting, with the error")
    try:
        await door.open()  # the broker is back
        # Both queues: the drain of ``results`` can run just before its copies land.
        got = await collect(
            broker, queues, lambda g: len(g["success"]) >= 4 and len(g["results"]) >= 4
        )
    finally:
        await door.close()
    assert sorted(m["vmta_queue_id"] for m in got["success"]) == sorted(ids)
    assert sorted(m["vmta_queue_id"] for m in got["results"]) == sorted(ids)
    assert got["retry"] == [] and got["failure"] == []


async def test_a_queue_that_refuses_gets_each_result_once_and_the_other_queue_too(
    plane_factory: Any, sink_factory: Any, broker: Any, queues: dict[str, str]
) -> None:
    """The broker's answer like an HTTP 500: ``success`` holds one message and refuses
    more (reject-publish) until the consumer reads it. Results wait and then all arrive;
    ``results``, which took every copy at once, gets none twice."""
    channel = await broker.channel()
    await channel.declare_queue(
        queues["success"],
        durable=True,
        arguments={"x-max-length": 1, "x-overflow": "reject-publish"},
    )
    await channel.close()
    plane = await amqp_plane(plane_factory, queues)
    sink = sink_factory()
    plane.add_relay("relay-1", sink.port)
    ids = [await plane.asend(MESSAGE) for _ in range(3)]

    def refused() -> Any:
        status = plane.plane.events.outbox.status(time.time())
        return status and status[0].last_error and status[0]

    status = await eventually(refused, what="a publish the full queue refused")
    assert status.backlog >= 1
    got = await collect(broker, queues, lambda g: len(g["success"]) >= 3)
    assert sorted(m["vmta_queue_id"] for m in got["success"]) == sorted(ids)
    got["results"] += await drain(broker, queues["results"])
    assert sorted(m["vmta_queue_id"] for m in got["results"]) == sorted(ids)
