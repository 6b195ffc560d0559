"""MailerQ's outbox: consume MailerQ message JSON from a RabbitMQ queue (default
``outbox``) into the spool.

Each AMQP message is acknowledged only after the message is committed to the spool
(AMQP 0-9-1 manual acknowledgements): if vmta dies between the commit and the ack,
RabbitMQ delivers it again, so a message may be queued twice but is never lost
(at-least-once, as MailerQ itself behaves).

What cannot become a message is rejected without requeueing (``basic.reject``,
``requeue=false``), with the reason logged: a body that is not JSON, not an object, or
breaks a field rule would fail the same way on every redelivery, and requeueing it would
spin forever. RabbitMQ dead-letters a rejected message when the queue has a
dead-letter exchange (an ``x-dead-letter-exchange`` argument or policy), so an operator
who wants to keep them configures one; otherwise it is dropped.

When the spool cannot take the message (the database is down), the message is returned
to the queue (``nack`` with requeue) after a pause, so that it is neither lost nor
consumed in a tight loop. The connection is robust: it reconnects after a broker restart.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Protocol

import aio_pika
import aio_pika.exceptions
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
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
    ) -> None:
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
        except (InvalidMqMessage, TooManyHops) as exc:
            self.rejected += 1
            why = "; ".join(exc.messages) if isinstance(exc, InvalidMqMessage) else str(exc)
            log.warning(
                "rejected AMQP message %s from queue %s (dead-lettered if the queue has a"
                " dead-letter exchange, else dropped): %s",
                message.message_id or message.delivery_tag,
                self.queue_name,
                why,
            )
            await message.reject(requeue=False)
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
