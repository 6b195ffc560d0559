"""kill -9 of `vmta serve` while it consumes MailerQ's AMQP outbox from the real RabbitMQ:
every AMQP message is delivered to the sink at least once (acks follow the spool commit,
so what was consumed but not committed is redelivered). SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import uuid

import aio_pika
import pytest

from tests.delivery.test_amqp_outbox import AMQP_URL
from tests.e2e.serve_process import ServeFactory, eventually, relay_to, wait_until
from tests.peers.sink import RecordingSink

pytestmark = pytest.mark.peers

MESSAGES = 600
DELIVERY_DEADLINE = 180.0


async def _amqp(queue: str, bodies: list[bytes] | None) -> int:
    """Publish ``bodies`` (persistent) to ``queue``, declaring it durable; or, with None,
    the number of messages ready in it."""
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel(publisher_confirms=True)
        if bodies is None:
            declared = await channel.declare_queue(queue, passive=True)
            return int(declared.declaration_result.message_count or 0)
        await channel.declare_queue(queue, durable=True)
        for body in bodies:
            await channel.default_exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=queue,
            )
        return len(bodies)


async def _delete(queue: str) -> None:
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel()
        await channel.queue_delete(queue)


def arrived(sink: RecordingSink) -> set[str]:
    return {r for t in sink.messages for r in t.rcpt_tos}


@pytest.mark.slow(23)
def test_kill_9_mid_consumption_delivers_every_amqp_message(
    serve: ServeFactory, sink: RecordingSink
) -> None:
    queue = f"vmta-test-outbox-{uuid.uuid4().hex[:10]}"
    token = uuid.uuid4().hex[:8]
    recipients = [f"r{n}-{token}@dest.test" for n in range(MESSAGES)]
    bodies = [
        json.dumps(
            {
                "envelope": "sender@src.test",
                "recipient": rcpt,
                "mime": f"From: sender@src.test\r\nx-mq-tag: kill\r\nSubject: {n}\r\n\r\nx\r\n",
            }
        ).encode()
        for n, rcpt in enumerate(recipients)
    ]
    serve.configure(VMTA_RABBITMQ_URL=AMQP_URL, VMTA_RABBITMQ_OUTBOX=queue, VMTA_RETRY_BACKOFF="1")
    first = serve.start()
    relay_to(first, sink.port)  # the default VirtualMTA: everything goes to the sink
    try:
        asyncio.run(_amqp(queue, bodies))
        wait_until(lambda: len(sink.messages) > 0, 60, "the first delivery from the outbox")
        first.kill9()
        delivered_at_kill = len(arrived(sink))
        left_in_queue = asyncio.run(_amqp(queue, None))
        assert delivered_at_kill < MESSAGES, "the outbox was already drained at the kill"
        assert left_in_queue > 0  # consumption was cut short: RabbitMQ holds the rest

        serve.start()
        missing: list[str] = []

        def all_arrived() -> bool:
            missing[:] = sorted(set(recipients) - arrived(sink))
            return not missing

        assert eventually(all_arrived, DELIVERY_DEADLINE, step=0.25), (
            f"{len(missing)} AMQP message(s) never reached the sink, e.g. {missing[:5]}"
        )
        wait_until(lambda: asyncio.run(_amqp(queue, None)) == 0, 60, "the queue to drain")
        assert all(b"x-mq-" not in t.data.lower() for t in sink.messages)
    finally:
        asyncio.run(_delete(queue))
