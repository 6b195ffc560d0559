"""RabbitMQ event destination, as MailerQ publishes its results: the result JSON of each
delivery attempt goes to ``success``, ``failure`` or ``retry``, and the final ones also to
``results`` (queue names configurable, a message's own ``queues`` object overriding them).

Each message is published persistent, mandatory, on a channel with publisher confirms:
an event counts as delivered only once the broker has confirmed every queue copy, and a
message no queue takes (returned) is an error, not a silent loss. Queues are declared
durable the first time they are used.

An event that goes to two queues (``results`` and ``success``) may be confirmed by one
and refused by the other (a full queue that rejects publishes). It is sent again, but
only to the queues that have not confirmed it: this destination remembers, for the
events not yet acknowledged, which copies the broker already has, so that within one
run no queue gets a copy twice.

The connection is this destination's own: made at the first batch, not at start-up (vmta
starts and takes mail while the broker is away), and dropped after any error that says
it is gone (a reset, a timeout, a publish on a channel or connection found closed:
aio-pika's ``RuntimeError("... closed")`` and aiormq's closed-channel errors). The event
sender then retries the same events with backoff, at most ``retry_max`` (30 s) apart,
and the next batch connects again; ``link`` says which it is for ``GET /api/events``
and ``/api/health``. Only an event whose confirmation was lost with the connection is
published again (same ``message_id``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping, Sequence

import aio_pika
import aiormq.exceptions
from aio_pika.abc import AbstractChannel, AbstractConnection
from yarl import URL

from vmta.delivery.events.event_sender import EventDeliveryFailed
from vmta.domain.reports.delivery_event import DELIVERY_ATTEMPT, mailerq_queues
from vmta.domain.reports.feedback_events import REPORT, REPORTS_QUEUE
from vmta.domain.reports.mailerq_result import DEFAULT_QUEUES
from vmta.resilience.link_state import LONGEST_RETRY, LinkState
from vmta.store.event_outbox import PendingEvent

# What says the connection is gone (or never came): the next batch connects again.
CONNECTION_LOST: tuple[type[BaseException], ...] = (
    TimeoutError,
    OSError,  # ConnectionError, a refused or reset socket
    RuntimeError,  # aio-pika: "... closed" on a channel or connection that went away
    EOFError,
    aio_pika.exceptions.AMQPError,
    aiormq.exceptions.AMQPError,
)
CLOSE_TIMEOUT = 2.0  # closing a connection that may be black-holed waits no longer


def display_amqp_url(url: str) -> str:
    """The broker URL without user information, for logs."""
    parsed = URL(url)
    return str(parsed.with_user(None).with_password(None).with_query(None))


class RabbitMqEventDestination:
    def __init__(
        self,
        url: str,
        *,
        name: str = "rabbitmq",
        queues: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.name = name
        self.kind = "rabbitmq"
        self.target = display_amqp_url(url)
        self.event_types = frozenset({DELIVERY_ATTEMPT, REPORT})
        self.url = url
        self.queues = dict(DEFAULT_QUEUES if queues is None else queues)
        self.timeout = timeout
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._declared: set[str] = set()
        # Event id -> the queues that confirmed it, for events some queue did not take
        # yet (at most one claimed batch of them).
        self._confirmed: dict[int, set[str]] = {}
        self.retry_max = LONGEST_RETRY  # the event sender retries a lost broker this often
        self.link = LinkState(name)

    async def _ready(self) -> AbstractChannel:
        if self._channel is not None and not self._channel.is_closed:
            return self._channel
        if self._connection is None or self._connection.is_closed:
            self._connection = await aio_pika.connect(self.url, timeout=self.timeout)
            self._declared.clear()
        self._channel = await self._connection.channel(
            publisher_confirms=True, on_return_raises=True
        )
        return self._channel

    async def _declare(self, channel: AbstractChannel, queue: str) -> AbstractChannel:
        if queue in self._declared:
            return channel
        try:
            await channel.declare_queue(queue, durable=True, timeout=self.timeout)
        except aio_pika.exceptions.ChannelPreconditionFailed:
            # It exists with other arguments (declared by its consumer): it takes messages
            # all the same. The failed declaration closed the channel.
            channel = await self._ready()
        self._declared.add(queue)
        return channel

    async def send(self, batch: Sequence[PendingEvent]) -> None:
        try:
            channel = await self._ready()
            plans = []
            for event in batch:
                queues = (
                    [q for q in (self.queues.get(REPORTS_QUEUE, ""),) if q]  # vmta.feedback
                    if event.event_type == REPORT
                    else mailerq_queues(event.payload, self.queues)
                )
                for queue in queues:
                    channel = await self._declare(channel, queue)
                plans.append((event, queues))
        except CONNECTION_LOST as exc:
            await self._reset()
            reason = f"RabbitMQ {self.target}: {_reason(exc)}"
            self.link.lost(reason, self.retry_max)
            raise EventDeliveryFailed(reason) from None
        self.link.connected()
        # Publish the whole batch, then wait for the confirms; the events acknowledged
        # are the longest confirmed prefix (a later one is sent again, never skipped).
        publishes = [
            asyncio.ensure_future(self._publish(channel, event, queues)) for event, queues in plans
        ]
        outcomes = await asyncio.gather(*publishes, return_exceptions=True)
        failures = [(i, o) for i, o in enumerate(outcomes) if isinstance(o, BaseException)]
        done = failures[0][0] if failures else len(batch)
        # The acknowledged prefix is forgotten; a later event that every queue took is
        # sent again with the rest, and then publishes nothing.
        for event in batch[:done]:
            self._confirmed.pop(event.id, None)
        if failures:
            await self._reset()
            reason = f"RabbitMQ {self.target}: {_reason(failures[0][1])}"
            if any(isinstance(o, CONNECTION_LOST) for _, o in failures):
                self.link.lost(reason, self.retry_max)
            raise EventDeliveryFailed(reason, done) from None

    async def _publish(
        self, channel: AbstractChannel, event: PendingEvent, queues: Sequence[str]
    ) -> None:
        body = json.dumps(event.payload["mailerq"], separators=(",", ":")).encode()
        confirmed = self._confirmed.setdefault(event.id, set())
        for queue in queues:
            if queue in confirmed:
                continue  # a try before this one got it there
            message = aio_pika.Message(
                body,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=str(event.id),
            )
            await channel.default_exchange.publish(
                message, routing_key=queue, mandatory=True, timeout=self.timeout
            )
            confirmed.add(queue)

    async def _reset(self) -> None:
        """Drop the connection after an error; the next batch connects again."""
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            # A broken connection may fail to close, or hang closing (black-holed).
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), CLOSE_TIMEOUT)

    async def close(self) -> None:
        await self._reset()


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text
