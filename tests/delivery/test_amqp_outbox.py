"""MailerQ's AMQP outbox against the real RabbitMQ at 127.0.0.1:5672: messages consumed
into the spool and delivered (through a real microsocks and a real tinyproxy, by an
external MTA's public_ip), acked only after the commit; what is not a MailerQ message goes
to the failure queue with the reason, then is acked; ISO 8601 times are taken. SQLite and
PostgreSQL."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import aio_pika
import pytest
from sqlalchemy import select

from tests.conftest import skip_or_fail
from tests.delivery.conftest import ExternalProxy, eventually
from tests.delivery.test_events_vendor_vocabulary import RESULT_KEYS
from tests.delivery.test_external_mta_delivery import PUBLIC_IP, add_external
from tests.peers.sink import RecordingSink
from vmta.delivery.ingress.amqp_outbox import OutboxConsumer
from vmta.domain.config.external_mta import ExternalMtaProtocol
from vmta.store.tables import messages

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


async def drain(channel: Any, queue: str) -> list[dict[str, Any]]:
    declared = await channel.declare_queue(queue, passive=True)
    found: list[dict[str, Any]] = []
    while (message := await declared.get(fail=False)) is not None:
        assert message.content_type == "application/json"
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        found.append(json.loads(message.body))
        await message.ack()
    return found


async def test_bad_messages_go_to_the_failure_queue_and_good_ones_still_go(
    world: Any, channel: Any, queue_name: str
) -> None:
    """MailerQ's way: a message vmta cannot take is published to ``failure`` with its
    JSON and a last result saying why, then acked; nothing is rejected or dropped."""
    plane, sinks = world
    failure = f"{queue_name}.failure"
    own_failure = f"{queue_name}.own-failure"
    dead = f"{queue_name}.dead"
    await channel.declare_queue(dead, durable=True)
    # The operator's queue, with a dead-letter exchange: nothing may reach it.
    await channel.declare_queue(
        queue_name,
        durable=True,
        arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead},
    )
    consumer = OutboxConsumer(AMQP_URL, queue_name, plane.plane.intake, failure_queue=failure)
    await consumer.start()
    bad_time = {
        "recipient": "t@c.test",
        "mime": "Subject: x\r\n\r\nx\r\n",
        "maxattempts": "three",
        "custom": {"id": 7},
        "queues": {"failure": own_failure},
    }
    try:
        await publish(channel, queue_name, b"{not json")
        await publish(channel, queue_name, json.dumps({"recipient": "x@c.test"}).encode())
        await publish(channel, queue_name, json.dumps(bad_time).encode())
        await publish(channel, queue_name, document("ok@c.test", "fine"))
        sink: RecordingSink = sinks["127.0.0.23"]
        await eventually(lambda: sink.messages, what="the good message")
        await eventually(lambda: consumer.rejected == 3, what="three refusals")
    finally:
        await consumer.stop()
    refused = await drain(channel, failure)
    own = await drain(channel, own_failure)
    assert len(refused) == 2 and len(own) == 1
    by_kind = {("message" in r): r for r in refused}
    not_json, no_mime = by_kind[True], by_kind[False]
    assert not_json["message"] == "{not json"
    assert no_mime["recipient"] == "x@c.test"
    assert own[0]["custom"] == {"id": 7} and own[0]["maxattempts"] == "three"
    for result, why in (
        (not_json, "not valid JSON"),
        (no_mime, "mime is required"),
        (own[0], "maxattempts"),
    ):
        last = result["results"][-1]
        assert (last["state"], last["result"]) == ("process", "invalid")
        assert why in last["description"]
        assert set(last) == RESULT_KEYS
    # Every original was acked: none is left, none was dead-lettered.
    declared = await channel.declare_queue(queue_name, passive=True)
    assert declared.declaration_result.message_count == 0
    assert await drain(channel, dead) == []
    assert [t.rcpt_tos for t in sink.messages] == [["ok@c.test"]]
    for name in (queue_name, dead, failure, own_failure):
        await channel.queue_delete(name)


async def test_iso_8601_times_with_an_offset_are_taken(
    world: Any, channel: Any, queue_name: str
) -> None:
    """The .NET SDK writes ``nextattempt`` and ``maxdelivertime`` as ISO 8601 with an
    offset: the message is taken, its deadline is that instant, and it is delivered."""
    plane, sinks = world
    consumer = OutboxConsumer(AMQP_URL, queue_name, plane.plane.intake)
    await consumer.start()
    deadline = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    as_sdk = deadline.astimezone(timezone(timedelta(hours=1))).strftime(
        "%Y-%m-%dT%H:%M:%S.0000000+01:00"
    )
    past = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    try:
        await publish(
            channel,
            queue_name,
            document("iso@c.test", "iso", maxdelivertime=as_sdk, nextattempt=past),
        )
        sink: RecordingSink = sinks["127.0.0.23"]
        await eventually(lambda: sink.messages, what="the delivery")
        await eventually(lambda: consumer.accepted == 1, what="the ack")
    finally:
        await consumer.stop()
    assert consumer.rejected == 0
    with plane.store.read() as conn:
        (expires_at,) = conn.execute(select(messages.c.expires_at)).one()
    assert expires_at == deadline.timestamp()
    await channel.queue_delete(queue_name)
