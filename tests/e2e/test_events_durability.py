"""No event is lost across kill -9: `vmta serve` with an HTTP receiver and RabbitMQ as
event destinations is killed in the middle of a 5,000-message load, then started again
on the same data directory. Every accepted recipient's success reaches both destinations at least
once, and the events seen twice (same id) are no more than vmta reports in flight."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections import Counter
from typing import Any

import aio_pika
import pytest

from tests.conftest import skip_or_fail
from tests.e2e.serve_process import ServeFactory, relay_to, wait_until
from tests.e2e.smtp_injector import Injection
from tests.peers.http_receiver import HttpReceiver
from tests.peers.sink import RecordingSink

AMQP_URL = os.environ.get("VMTA_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
MESSAGES = 5000  # the check: a 5,000-message run (6,000 recipients)
SESSIONS = 10
KILL_AT = 0.4
HTTP_BATCH = "100"  # as many as a claim holds: the fewest POSTs for the receiver
DEADLINE = 240.0  # seconds; bounds a hang on a loaded machine, measures nothing


async def _drain(queues: list[str], delete: bool) -> dict[str, list[tuple[str, Any]]]:
    """Every message in each queue, read by a consumer (prefetching, not one basic.get
    per message: 12,000 round trips were a fifth of the test's time)."""
    connection = await aio_pika.connect(AMQP_URL, timeout=5)
    found: dict[str, list[tuple[str, Any]]] = {}
    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=1000)
        for name in queues:
            queue = await channel.declare_queue(name, durable=True)
            waiting = queue.declaration_result.message_count or 0
            got = found.setdefault(name, [])
            if waiting:
                async with queue.iterator(no_ack=True) as messages:
                    async for message in messages:
                        got.append((message.message_id or "", json.loads(message.body)))
                        if len(got) == waiting:
                            break
            if delete:
                await queue.delete(if_unused=False, if_empty=False)
    finally:
        await connection.close()
    return found


def drain(queues: list[str], delete: bool = False) -> dict[str, list[tuple[str, Any]]]:
    try:
        return asyncio.run(_drain(queues, delete))
    except OSError as exc:
        skip_or_fail(f"RabbitMQ not reachable at {AMQP_URL}: {exc}")
        raise


@pytest.mark.slow(45)
def test_kill_9_loses_no_event(
    serve: ServeFactory, sink: RecordingSink, http_receiver: HttpReceiver
) -> None:
    tag = uuid.uuid4().hex[:8]
    queues = {kind: f"vmta-e2e-{kind}-{tag}" for kind in ("results", "success", "failure", "retry")}
    drain(list(queues.values()))  # reachable, and the queues exist and are empty
    all_queues = [*queues.values(), f"vmta-e2e-outbox-{tag}"]
    serve.configure(
        VMTA_RETRY_BACKOFF="1",
        VMTA_EVENTS_HTTP_URL=http_receiver.url,
        VMTA_EVENTS_HTTP_BATCH=HTTP_BATCH,
        VMTA_RABBITMQ_URL=AMQP_URL,
        VMTA_RABBITMQ_RESULTS=queues["results"],
        VMTA_RABBITMQ_SUCCESS=queues["success"],
        VMTA_RABBITMQ_FAILURE=queues["failure"],
        VMTA_RABBITMQ_RETRY=queues["retry"],
        # With a broker URL vmta also consumes MailerQ's outbox: one of this test's own.
        VMTA_RABBITMQ_OUTBOX=f"vmta-e2e-outbox-{tag}",
    )
    try:
        first = serve.start()
        relay_to(first, sink.port)
        injection = Injection(
            "127.0.0.1", serve.smtp_port, MESSAGES, sessions=SESSIONS, deadline=DEADLINE, token=tag
        ).start()
        wait_until(
            lambda: (
                injection.accepted_count() >= MESSAGES * KILL_AT
                and len(http_receiver.accepted_events()) > 0
            ),
            DEADLINE,
            "part of the load accepted, and events flowing",
        )
        first.kill9()

        second = serve.start()
        wait_until(injection.finished.is_set, DEADLINE, "the injection to end")
        injection.join(10)
        assert not injection.errors, injection.errors
        accepted = injection.snapshot()
        wanted = {(a.queue_id, r) for a in accepted for r in a.recipients}

        def http_successes() -> set[tuple[str, str]]:
            return {
                (e["message_id"], e["email"])
                for e in http_receiver.accepted_events()
                if e["status"] == "success"
            }

        wait_until(lambda: wanted <= http_successes(), DEADLINE, "every success over HTTP")
        wait_until(
            lambda: second.get("/api/queue")["recipients"]["queued"] == 0,
            DEADLINE,
            "the spool to have no queued recipient",
        )

        def settled() -> bool:
            report = second.get("/api/events")
            return all(d["backlog"] == 0 for d in report["destinations"])

        wait_until(settled, DEADLINE, "every event acknowledged by both destinations")
        report = second.get("/api/events")
        recovered = report["recovered_in_flight"]
        assert {d["name"] for d in report["destinations"]} == {"http", "rabbitmq"}
    finally:
        found = drain(all_queues, delete=True)

    successes = found[queues["success"]]
    seen_amqp = {(body["vmta_queue_id"], body["recipient"]) for _, body in successes}
    assert wanted <= seen_amqp
    # Final results go to "results" too: each success there as well.
    results = found[queues["results"]]
    assert {mid for mid, _ in results} == {mid for mid, _ in successes}

    def twice(ids: list[Any]) -> int:
        return sum(n - 1 for n in Counter(ids).values())

    # One claim of an event sent again is at most one copy too many in each queue (the
    # kill may fall between the confirms of its "results" and "success" copies).
    http_twice = twice([e["id"] for e in http_receiver.accepted_events()])
    amqp_twice = max(twice([mid for mid, _ in successes]), twice([mid for mid, _ in results]))
    duplicates = http_twice + amqp_twice
    print(f"kill -9: {recovered} event(s) in flight, {duplicates} seen twice")
    assert duplicates <= recovered
