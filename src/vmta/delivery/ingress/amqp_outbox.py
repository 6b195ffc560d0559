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
consumed in a tight loop.

The connection is supervised by the consumer itself: ``start`` returns at once (vmta
starts and takes SMTP mail while the broker is away), and a task connects, consumes, and
after any loss (a reset, a closed channel, a broker that stops answering heartbeats)
connects again with backoff, at most 30 s apart, for as long as vmta runs. Messages
received but not acknowledged when the connection went are delivered again by RabbitMQ;
``link`` says whether it consumes, for ``/api/health``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any, Protocol

import aio_pika
import aio_pika.exceptions
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractIncomingMessage,
    AbstractQueue,
)
from yarl import URL

from vmta.delivery.events.event_amqp import CLOSE_TIMEOUT, CONNECTION_LOST, display_amqp_url
from vmta.delivery.ingress.outbox_failures import (
    DEFAULT_FAILURE_QUEUE,
    failure_document,
    failure_queue,
    publish_failure,
)
from vmta.domain.message.mq_message import InvalidMqMessage, MqMessage, read_message
from vmta.domain.paths.mail_loops import TooManyHops
from vmta.resilience.link_state import INITIAL_RETRY, LONGEST_RETRY, LinkState, next_delay

log = logging.getLogger(__name__)

PREFETCH = 64  # messages in flight per consumer: enough to fill a batch commit
RETRY_PAUSE = 2.0  # seconds before a message the spool could not take is returned
HEARTBEAT = 10  # seconds (AMQP heartbeat): a broker gone silent is noticed within ~2 of them
CONNECT_TIMEOUT = 10.0
FIRST_ATTEMPT = 5.0  # seconds start() waits, at most, for the first connection


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
        retry_initial: float = INITIAL_RETRY,
        retry_max: float = LONGEST_RETRY,
        heartbeat: int = HEARTBEAT,
    ) -> None:
        self._failure_queue = failure_queue
        self._url = url
        self.queue_name = queue
        self._intake = intake
        self._prefetch = prefetch
        self._retry_pause = retry_pause
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._heartbeat = heartbeat
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()  # the connection or the channel closed
        self._attempted = asyncio.Event()  # the first connection was made or failed
        self._stopping = False
        self.link = LinkState("rabbitmq-outbox")
        self.accepted = 0
        self.rejected = 0

    async def start(self, first_attempt: float = FIRST_ATTEMPT) -> None:
        """Start consuming in the background. Waits at most ``first_attempt`` seconds for
        the first connection to be made or to fail (a caller that publishes right after
        finds the queue declared); `vmta serve` passes 0 and never waits for the broker."""
        self._stopping = False
        self._attempted.clear()
        self._task = asyncio.create_task(self._run(), name="amqp-outbox")
        if first_attempt > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._attempted.wait(), first_attempt)

    async def _run(self) -> None:
        """Connect, consume until the link is lost, wait, again: until stopped."""
        delay = self._retry_initial
        target = display_amqp_url(self._url)
        while not self._stopping:
            self._lost.clear()
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except CONNECTION_LOST as exc:
                reason = f"RabbitMQ {target}: {type(exc).__name__}: {exc}"
            except Exception as exc:  # never let the consumer die: log and try again
                log.exception("the AMQP outbox consumer failed")
                reason = f"RabbitMQ {target}: {type(exc).__name__}: {exc}"
            else:
                self._attempted.set()
                if self.link.connected():
                    log.info("consuming MailerQ messages from RabbitMQ queue %s", self.queue_name)
                delay = self._retry_initial
                await self._lost.wait()
                if self._stopping:
                    return
                reason = f"RabbitMQ {target}: connection lost"
            await self._teardown()
            self._attempted.set()
            if self.link.lost(reason, delay):
                log.warning(
                    "AMQP outbox %s: %s; reconnecting (at most %.0f s apart)",
                    self.queue_name,
                    reason,
                    self._retry_max,
                )
            await asyncio.sleep(delay)
            delay = next_delay(delay, self._retry_max)

    async def _consume(self) -> None:
        url = URL(self._url)
        if "heartbeat" not in url.query:  # the operator's own value wins
            url = url.update_query(heartbeat=self._heartbeat)
        connection = await aio_pika.connect(url, timeout=CONNECT_TIMEOUT)
        self._connection = connection
        connection.close_callbacks.add(self._closed)
        self._channel = await connection.channel()
        await self._channel.set_qos(prefetch_count=self._prefetch)
        self._queue = await self._declare()
        assert self._channel is not None
        self._channel.close_callbacks.add(self._closed)
        self._tag = await self._queue.consume(self._on_message)

    def _closed(self, *_args: object) -> None:
        self._lost.set()

    async def _teardown(self) -> None:
        connection, self._connection = self._connection, None
        self._channel = self._queue = None
        self._tag = None
        if connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), CLOSE_TIMEOUT)

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
        except TooManyHops as exc:  # a mail loop (domain/paths/mail_loops.py): nothing stored
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
        # Committed: only now may RabbitMQ forget it. If the channel went meanwhile,
        # RabbitMQ delivers it again (queued twice, never lost: see above).
        try:
            await message.ack()
        except CONNECTION_LOST as exc:
            log.warning("acknowledging AMQP message failed (%s); it will come again", exc)
            self._lost.set()
            return
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
        self._stopping = True
        self._lost.set()
        if self._queue is not None and self._tag is not None:
            try:
                await asyncio.wait_for(self._queue.cancel(self._tag), CLOSE_TIMEOUT)
            except Exception:
                log.debug("cancelling the outbox consumer failed", exc_info=True)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._teardown()
