"""What the AMQP outbox does with a message it cannot take: MailerQ's answer, not a drop.

The message goes to the ``failure`` queue as its own JSON plus ``results``, whose last
entry says why (``state: "process"``, ``result: "invalid"``), and only then is the
original acknowledged. A body that is not a JSON object is carried as text under
``message``. Publishing uses a channel of its own, with publisher confirms: declaring a
queue an operator made with other arguments closes the channel that tried, and that must
never be the consumer's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import aio_pika
import aio_pika.exceptions
from aio_pika.abc import AbstractConnection

from vmta.domain.reports.delivery_event import usable_queue_name
from vmta.domain.reports.mailerq_result import result_entry

DEFAULT_FAILURE_QUEUE = "failure"


def failure_document(body: bytes, reasons: Sequence[str], at: float) -> dict[str, Any]:
    """The failure result of an outbox message vmta could not take."""
    try:
        parsed: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        parsed = None
    if isinstance(parsed, dict):
        document = dict(parsed)
    else:
        document = {"message": body.decode("utf-8", errors="replace")}
    earlier = document.get("results")
    entry = result_entry(
        at=at,
        delivered=False,
        stage="process",
        ended="invalid",
        reply="; ".join(reasons),
        source_ip=None,
        remote_ip=None,
        remote_host=None,
        messages=None,
        dsn=None,
    )
    document["results"] = [*(earlier if isinstance(earlier, list) else []), entry]
    return document


def failure_queue(document: dict[str, Any], configured: str) -> str:
    """The queue the failure goes to: the message's own ``queues.failure`` as MailerQ
    honours it, else the configured one (``failure`` when that is turned off: a message
    vmta cannot take must still go somewhere)."""
    own = document.get("queues")
    if isinstance(own, dict):
        name = own.get("failure")
        if isinstance(name, str) and name.strip() and usable_queue_name(name.strip()):
            return name.strip()
    return configured or DEFAULT_FAILURE_QUEUE


async def publish_failure(
    connection: AbstractConnection, queue: str, document: dict[str, Any]
) -> None:
    """Publish ``document`` persistently to ``queue`` and wait for the broker's
    confirm; raises if the broker did not take it."""
    channel = await connection.channel(publisher_confirms=True)
    try:
        try:
            await channel.declare_queue(queue, durable=True)
        except aio_pika.exceptions.ChannelPreconditionFailed:
            await channel.close()
            channel = await connection.channel(publisher_confirms=True)
            await channel.declare_queue(queue, passive=True)
        await channel.default_exchange.publish(
            aio_pika.Message(
                json.dumps(document, separators=(",", ":")).encode(),
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                timestamp=time.time(),
            ),
            routing_key=queue,
            mandatory=True,
        )
    finally:
        if not channel.is_closed:
            await channel.close()
