"""`vmta serve` with RabbitMQ away at start (a TCP forwarder of the test's own, in front
of the real broker, refusing connections): it starts, takes mail over SMTP and delivers
it, shows both RabbitMQ links down on /api/health, and once the broker is reachable
publishes the results and consumes the MailerQ outbox, by itself."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import aio_pika
import pytest
from yarl import URL

from tests.conftest import skip_or_fail
from tests.e2e.serve_process import ServeFactory, relay_to, send_subjects, wait_until
from tests.peers.forwarder import TcpForwarder
from tests.peers.sink import RecordingSink

pytestmark = [pytest.mark.peers, pytest.mark.one_database]

AMQP_URL = os.environ.get("VMTA_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


async def _take(queue: str) -> list[dict[str, Any]]:
    connection = await aio_pika.connect(AMQP_URL, timeout=5)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, durable=True)
        taken = []
        while (message := await declared.get(fail=False)) is not None:
            taken.append(json.loads(message.body))
            await message.ack()
        return taken


async def _put(queue: str, body: dict[str, Any]) -> None:
    connection = await aio_pika.connect(AMQP_URL, timeout=5)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(queue, durable=True)
        message = aio_pika.Message(json.dumps(body).encode())
        await channel.default_exchange.publish(message, routing_key=queue)


async def _delete(queues: list[str]) -> None:
    connection = await aio_pika.connect(AMQP_URL, timeout=5)
    async with connection:
        channel = await connection.channel()
        for queue in queues:
            await channel.queue_delete(queue)


@pytest.fixture
def names() -> Iterator[dict[str, str]]:
    try:
        asyncio.run(_take(f"vmta-test-probe-{uuid.uuid4().hex[:8]}"))
    except Exception as exc:
        skip_or_fail(f"RabbitMQ not reachable at {AMQP_URL}: {exc}")
    tag = uuid.uuid4().hex[:10]
    kinds = ("results", "success", "failure", "retry", "outbox")
    queues = {kind: f"vmta-test-{kind}-{tag}" for kind in kinds}
    yield queues
    asyncio.run(_delete([*queues.values(), f"vmta-test-probe-{tag}"]))


@pytest.mark.slow(15)
def test_serve_starts_and_takes_mail_with_the_broker_away_then_publishes(
    serve: ServeFactory, sink: RecordingSink, names: dict[str, str]
) -> None:
    real = URL(AMQP_URL)
    with TcpForwarder(real.host or "127.0.0.1", real.port or 5672) as forwarder:
        forwarder.refuse()
        serve.configure(
            VMTA_RABBITMQ_URL=str(real.with_host("127.0.0.1").with_port(forwarder.port)),
            VMTA_RABBITMQ_OUTBOX=names["outbox"],
            VMTA_RABBITMQ_RESULTS=names["results"],
            VMTA_RABBITMQ_SUCCESS=names["success"],
            VMTA_RABBITMQ_FAILURE=names["failure"],
            VMTA_RABBITMQ_RETRY=names["retry"],
        )
        server = serve.start()  # would fail the test if start-up waited for the broker
        relay_to(server, sink.port)
        send_subjects(server.smtp_port, ["while-away"])
        wait_until(lambda: len(sink.messages) == 1, 30, "the delivery while RabbitMQ is away")

        def links() -> dict[str, Any]:
            response = server.api().get("/api/health")
            assert response.status_code == 200
            found: dict[str, Any] = response.json()["dependencies"]
            return found

        wait_until(
            lambda: {v["state"] for v in links().values()} == {"down"}, 30, "both links down"
        )
        assert set(links()) == {"events:rabbitmq", "amqp_outbox"}
        (destination,) = server.get("/api/events")["destinations"]
        assert destination["backlog"] == 1
        assert destination["connection"]["state"] == "down"
        assert "guest" not in json.dumps(links())

        forwarder.restore()
        results: list[dict[str, Any]] = []

        def published() -> bool:
            results.extend(asyncio.run(_take(names["results"])))
            return bool(results)

        # Reconnect attempts are at most 30 s apart: bounded by that plus a margin.
        wait_until(published, 45, "the result published once the broker is back", step=0.5)
        assert len(results) == 1 and results[0]["recipient"] == "rcpt@dest.test"
        wait_until(lambda: links()["amqp_outbox"]["state"] == "up", 45, "the outbox consumer")
        asyncio.run(
            _put(
                names["outbox"],
                {
                    "envelope": "info@src.test",
                    "recipient": "amqp@dest.test",
                    "mime": "From: info@src.test\r\nSubject: from-amqp\r\n\r\nbody\r\n",
                },
            )
        )
        wait_until(lambda: len(sink.messages) == 2, 30, "the outbox message delivered")
        assert server.stop() == 0
