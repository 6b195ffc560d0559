"""MailerQ's AMQP outbox against the real RabbitMQ at 127.0.0.1:5672: messages consumed
into the spool and delivered (through a real microsocks and a real tinyproxy, by an
external MTA's public_ip), acked only after the commit; what is not a MailerQ message is
rejected and dead-lettered. SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest

from tests.conftest import skip_or_fail
from tests.delivery.conftest import ExternalProxy, eventually
from tests.delivery.test_external_mta_delivery import PUBLIC_IP, add_external
from tests.peers.sink import RecordingSink
from vmta.delivery.amqp_outbox import OutboxConsumer
from vmta.domain.external_mta import ExternalMtaProtocol

pytestmark = pytest.mark.peers

AMQP_URL = os.environ.get("VMTA_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


@pytest.fixture
async def channel() -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    try:
        connection = await aio_pika.connect(AMQP_URL)
    except (OSError, aio_pika.exceptions.AMQPConnectionError) as exc:
        skip_or_fail(f"RabbitMQ not reachable at {AMQP_URL}: {exc}")
    async with connection:
        yield await connection.channel()


@pytest.fixture
def queue_name() -> str:
    return f"vmta-test-outbox-{uuid.uuid4().hex[:10]}"


async def publish(channel: aio_pika.abc.AbstractChannel, queue: str, body: bytes) -> None:
    await channel.default_exchange.publish(
        aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=queue
    )


def document(recipient: str, subject: str, **extra: Any) -> bytes:
    mime = f"From: info@src.test\r\nx-mq-tag: t\r\nSubject: {subject}\r\n\r\nbody\r\n"
    return json.dumps(
        {"envelope": "info@src.test", "recipient": recipient, "mime": mime, **extra}
    ).encode()


async def test_outbox_messages_leave_through_the_external_mta_and_are_acked(
    world: Any, external_proxy: ExternalProxy, channel: Any, queue_name: str
) -> None:
    plane, sinks = world
    protocol = ExternalMtaProtocol(external_proxy.protocol)
    add_external(plane, protocol, connect_port=external_proxy.port)
    consumer = OutboxConsumer(AMQP_URL, queue_name, plane.plane.intake)
    await consumer.start()
    try:
        for n in range(3):
            await publish(channel, queue_name, document(f"u{n}@c.test", f"m{n}", ips=[PUBLIC_IP]))
        sink: RecordingSink = sinks["127.0.0.23"]
        await eventually(lambda: len(sink.messages) == 3, what="three deliveries")
        peers = {c.peer_ip for c in sink.connections if c.transactions}
        assert peers == {external_proxy.egress_ip}
        assert all(b"x-mq-" not in t.data.lower() for t in sink.messages)
        assert sorted(r for t in sink.messages for r in t.rcpt_tos) == [
            "u0@c.test",
            "u1@c.test",
            "u2@c.test",
        ]
        await eventually(lambda: consumer.accepted == 3, what="three acks")
    finally:
        await consumer.stop()
    declared = await channel.declare_queue(queue_name, passive=True)
    assert declared.declaration_result.message_count == 0  # every one was acked
    await channel.queue_delete(queue_name)


async def test_bad_messages_are_dead_lettered_and_good_ones_still_go(
    world: Any, channel: Any, queue_name: str
) -> None:
    plane, sinks = world
    dead = f"{queue_name}.dead"
    await channel.declare_queue(dead, durable=True)
    # The operator's queue, with a dead-letter exchange: vmta uses it as declared.
    await channel.declare_queue(
        queue_name,
        durable=True,
        arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead},
    )
    consumer = OutboxConsumer(AMQP_URL, queue_name, plane.plane.intake)
    await consumer.start()
    try:
        await publish(channel, queue_name, b"{not json")
        await publish(channel, queue_name, json.dumps({"recipient": "x@c.test"}).encode())
        await publish(channel, queue_name, document("ok@c.test", "fine"))
        sink: RecordingSink = sinks["127.0.0.23"]
        await eventually(lambda: sink.messages, what="the good message")
        await eventually(lambda: consumer.rejected == 2, what="two rejections")
    finally:
        await consumer.stop()
    dead_queue = await channel.declare_queue(dead, passive=True)
    bodies = []
    for _ in range(2):
        message = await dead_queue.get(timeout=5)
        bodies.append(message.body)
        await message.ack()
    assert sorted(bodies) == sorted([b"{not json", b'{"recipient": "x@c.test"}'])
    assert [t.rcpt_tos for t in sink.messages] == [["ok@c.test"]]
    await channel.queue_delete(queue_name)
    await channel.queue_delete(dead)
