"""RabbitMQ failing as a network fails it, with a TCP forwarder of the test's own between
vmta and the real broker at 127.0.0.1:5672 (reset, black hole, refused port); the broker
itself is never stopped. Results resume by themselves, none twice; the MailerQ outbox
consumer reconnects by itself; each link's state is shown while it is down."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aio_pika
import pytest
from yarl import URL

from tests.delivery.conftest import RunningPlane, eventually
from tests.delivery.test_events_rabbitmq import MESSAGE, QUICK, broker, queues
from tests.peers.forwarder import TcpForwarder
from vmta.delivery.events.event_setup import EventSettings
from vmta.delivery.ingress.amqp_outbox import OutboxConsumer

pytestmark = [pytest.mark.peers, pytest.mark.one_database]
__all__ = ["broker", "queues"]  # fixtures

AMQP_URL = os.environ.get("VMTA_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


@pytest.fixture
def forwarder() -> Iterator[TcpForwarder]:
    real = URL(AMQP_URL)
    with TcpForwarder(real.host or "127.0.0.1", real.port or 5672) as fwd:
        yield fwd


def through(forwarder: TcpForwarder) -> str:
    return str(URL(AMQP_URL).with_host("127.0.0.1").with_port(forwarder.port))


async def take_all(broker: Any, queue: str) -> list[tuple[str | None, dict[str, Any]]]:
    """Every message in ``queue`` now, acknowledged: (message_id, body)."""
    channel = await broker.channel()
    try:
        declared = await channel.declare_queue(queue, durable=True)
        taken = []
        while (message := await declared.get(fail=False)) is not None:
            taken.append((message.message_id, json.loads(message.body)))
            await message.ack()
        return taken
    finally:
        await channel.close()


async def rabbit_plane(plane_factory: Any, queues: dict[str, str], url: str) -> RunningPlane:
    events = EventSettings(rabbitmq_url=url, rabbitmq_queues=queues, sender=QUICK)
    plane: RunningPlane = await plane_factory(events=events)
    (destination,) = plane.plane.events.destinations
    destination.timeout = 1.0  # type: ignore[attr-defined]  # a black hole costs 1 s, not 10
    return plane


def link(plane: RunningPlane) -> dict[str, Any]:
    (described,) = plane.plane.events.describe()
    connection: dict[str, Any] = described["connection"]
    return connection


async def test_results_resume_after_cuts_and_none_is_published_twice(
    plane_factory: Any, sink_factory: Any, broker: Any, queues: dict[str, str], forwarder: Any
) -> None:
    plane = await rabbit_plane(plane_factory, queues, through(forwarder))
    sink = sink_factory()
    plane.add_relay("relay-1", sink.port)
    results: list[tuple[str | None, dict[str, Any]]] = []

    async def results_for(ids: list[str]) -> None:
        async def arrived() -> bool:
            results.extend(await take_all(broker, queues["results"]))
            return {body["vmta_queue_id"] for _, body in results} >= set(ids)

        for _ in range(400):  # bounded: 20 s
            if await arrived():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"results missing; have {results}")

    sent = [await plane.asend(MESSAGE) for _ in range(3)]
    await results_for(sent)
    assert link(plane)["state"] == "up"
    for _round in range(3):
        forwarder.cut()  # between batches: no confirmation is in flight
        sent += [await plane.asend(MESSAGE) for _ in range(3)]
        await results_for(sent)
    assert link(plane)["losses"] >= 1
    assert forwarder.accepted >= 2  # it did connect again
    ids = [body["vmta_queue_id"] for _, body in results]
    assert sorted(ids) == sorted(sent)  # every one, none twice
    assert len({message_id for message_id, _ in results}) == len(results)
    assert sink.messages and len(sink.messages) == len(sent)


async def test_results_wait_through_a_black_hole_and_say_why(
    plane_factory: Any, sink_factory: Any, broker: Any, queues: dict[str, str], forwarder: Any
) -> None:
    plane = await rabbit_plane(plane_factory, queues, through(forwarder))
    sink = sink_factory()
    plane.add_relay("relay-1", sink.port)
    forwarder.blackhole()
    queue_id = await plane.asend(MESSAGE)
    await eventually(lambda: len(sink.messages) == 1, what="the delivery")
    await eventually(lambda: link(plane)["state"] == "down", what="the link shown down")
    assert "RabbitMQ" in link(plane)["last_error"]
    assert "guest" not in json.dumps(link(plane))  # no credentials in what is shown
    status = await plane.plane.events.status()
    assert status[0].backlog == 1
    forwarder.restore()
    taken: list[tuple[str | None, dict[str, Any]]] = []

    async def arrived() -> bool:
        taken.extend(await take_all(broker, queues["results"]))
        return bool(taken)

    for _ in range(600):  # bounded: 30 s (one reconnect backoff at most)
        if await arrived():
            break
        await asyncio.sleep(0.05)
    assert [body["vmta_queue_id"] for _, body in taken] == [queue_id]
    assert link(plane)["state"] == "up"


# ---- the MailerQ outbox consumer ---------------------------------------------------------


@pytest.fixture
async def outbox_queue(broker: Any) -> AsyncIterator[str]:
    name = f"vmta-test-outbox-{uuid.uuid4().hex[:10]}"
    yield name
    channel = await broker.channel()
    await channel.queue_delete(name)
    await channel.close()


async def put(broker: Any, queue: str, recipient: str) -> None:
    channel = await broker.channel()
    await channel.declare_queue(queue, durable=True)
    body = json.dumps(
        {
            "envelope": "info@src.test",
            "recipient": recipient,
            "mime": "From: info@src.test\r\nSubject: s\r\n\r\nbody\r\n",
        }
    ).encode()
    await channel.default_exchange.publish(aio_pika.Message(body), routing_key=queue)
    await channel.close()


async def test_outbox_consumer_starts_without_the_broker_and_reconnects_after_cuts(
    plane: RunningPlane, sink_factory: Any, broker: Any, outbox_queue: str, forwarder: Any
) -> None:
    sink = sink_factory()
    plane.add_relay("relay-1", sink.port)
    plane.set_default("relay-1")
    forwarder.refuse()  # the broker's port answers RST
    consumer = OutboxConsumer(
        through(forwarder), outbox_queue, plane.plane.intake, retry_initial=0.1, retry_max=0.5
    )
    await consumer.start()  # returns at once
    try:
        assert consumer.link.state != "up"
        await eventually(lambda: consumer.link.state == "down", what="the link shown down")
        forwarder.restore()
        await eventually(lambda: consumer.link.state == "up", what="the consumer connected")
        await put(broker, outbox_queue, "a@dest.test")
        await eventually(lambda: consumer.accepted == 1, what="the first message")
        for n in range(2):
            forwarder.cut()
            await eventually(lambda n=n: consumer.link.losses == n + 1, what="the loss seen")
            await put(broker, outbox_queue, f"b{n}@dest.test")
            await eventually(lambda n=n: consumer.accepted == n + 2, what="a message after a cut")
        await eventually(lambda: len(sink.messages) == 3, what="three deliveries")
        rcpts = sorted(r for t in sink.messages for r in t.rcpt_tos)
        assert rcpts == ["a@dest.test", "b0@dest.test", "b1@dest.test"]
    finally:
        await consumer.stop()
