"""MailerQ's outbox: consume MailerQ message JSON from a RabbitMQ queue (default
``outbox``) into the spool.

Each AMQP message is acknowledged only after the message is committed to the spool
(AMQP 0-9-1 manual acknowledgements): if vmta dies between the commit and the ack,
RabbitMQ delivers it again, so a message may be queued twice but is never lost
(at-least-once, as MailerQ itself behaves).

What cannot become a message (a body that is not JSON, not an object, or breaks a field
rule: it would fail the same way on every redelivery) is never dropped: as MailerQ does,
it is published to the ``failure`` queue with its JSON and a last result saying why
(``outbox_failures``), and acked only once the broker confirmed that publish. If the
publish fails, the message is returned to the queue after a pause, as below.

When the spool cannot take the message (the database is down), the message is returned
to the queue (``nack`` with requeue) after a pause, so that it is neither lost nor
consumed in a tight loop. The connection is robust: it reconnects after a broker restart.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Protocol

import aio_pika
import aio_pika.exceptions
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)

from vmta.delivery.outbox_failures import (
    DEFAULT_FAILURE_QUEUE,
    failure_document,
    failure_queue,
    publish_failure,
)
from vmta.domain.mail_loops import TooManyHops
from vmta.domain.mq_message import InvalidMqMessage, MqMessage, read_message

log = logging.getLogger(__name__)

PREFETCH = 64  # messages in flight per consumer: enough to fill a batch commit
RETRY_PAUSE = 2.0  # seconds before a message the spool could not take is returned


class MqIntake(Protocol):
    async def accept_mq(
        self, message: MqMessage, *, via: str, client_ip: str | None, auth_name: str | None
    ) -> str: ...


def parse_body(body: bytes) -> MqMessage:
    """A MailerQ message from an AMQP body; InvalidMqMessage saying why it is not one.
    (Times are checked here and read again by the intake against its own clock.)"""
    try:
        document: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidMqMessage(["the body is not valid JSON"]) from None
    return read_message(document, 0.0)


class OutboxConsumer:
    def __init__(
        self,
        url: str,
        queue: str,
        intake: MqIntake,
        *,
        prefetch: int = PREFETCH,
        retry_pause: float = RETRY_PAUSE,
        failure_queue: str = DEFAULT_FAILURE_QUEUE,
    ) -> None:
        self._failure_queue = failure_queue
        self._url = url
        self.queue_name = queue
        self._intake = intake
        self._prefetch = prefetch
        self._retry_pause = retry_pause
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None
        self.accepted = 0
        self.rejected = 0

    async def start(self) -> None:
        self._connection = await aio_pika.connect_robust(self._url)
        self._channel = await self._connection.channel()
        await self._channel.set_qos(prefetch_count=self._prefetch)
        self._queue = await self._declare()
        self._tag = await self._queue.consume(self._on_message)
        log.info("consuming MailerQ messages from RabbitMQ queue %s", self.queue_name)

    async def _declare(self) -> AbstractQueue:
        """The queue, durable as MailerQ's own. A queue the operator declared already with
        other arguments (a dead-letter exchange, a length limit) is used as it is."""
        assert self._connection is not None and self._channel is not None
        try:
            return await self._channel.declare_queue(self.queue_name, durable=True)
        except aio_pika.exceptions.ChannelPreconditionFailed:
            # The failed declaration closed the channel (AMQP 0-9-1 §1.8.3.2): open another.
            self._channel = await self._connection.channel()
            await self._channel.set_qos(prefetch_count=self._prefetch)
            return await self._channel.declare_queue(self.queue_name, passive=True)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            parsed = parse_body(message.body)
            await self._intake.accept_mq(parsed, via="AMQP", client_ip=None, auth_name=None)
        except InvalidMqMessage as exc:
            await self._refuse(message, exc.messages)
            return
        except TooManyHops as exc:  # a mail loop (domain/mail_loops.py): nothing stored
            await self._refuse(message, [str(exc)])
            return
        except Exception:
            log.exception(
                "could not store AMQP message %s; returning it to queue %s in %.0f s",
                message.message_id or message.delivery_tag,
                self.queue_name,
                self._retry_pause,
            )
            await asyncio.sleep(self._retry_pause)
            await message.nack(requeue=True)
            return
        # Committed: only now may RabbitMQ forget it.
        await message.ack()
        self.accepted += 1

    async def _refuse(self, message: AbstractIncomingMessage, reasons: list[str]) -> None:
        """A message vmta cannot take: to the failure queue, then acked (never dropped)."""
        document = failure_document(message.body, reasons, time.time())
        queue = failure_queue(document, self._failure_queue)
        try:
            assert self._connection is not None
            await publish_failure(self._connection, queue, document)
        except Exception:
            log.exception(
                "could not publish refused AMQP message %s to queue %s; returning it to"
                " queue %s in %.0f s",
                message.message_id or message.delivery_tag,
                queue,
                self.queue_name,
                self._retry_pause,
            )
            await asyncio.sleep(self._retry_pause)
            await message.nack(requeue=True)
            return
        await message.ack()
        self.rejected += 1
        log.warning(
            "refused AMQP message %s from queue %s, published to queue %s: %s",
            message.message_id or message.delivery_tag,
            self.queue_name,
            queue,
            "; ".join(reasons),
        )

    async def stop(self) -> None:
        """Stop consuming; messages received but not yet acked go back to the queue when
        the channel closes."""
        if self._queue is not None and self._tag is not None:
            try:
                await self._queue.cancel(self._tag)
            except Exception:
                log.debug("cancelling the outbox consumer failed", exc_info=True)
        if self._connection is not None:
            await self._connection.close()
        self._connection = self._channel = self._queue = None
        self._tag = None
