"""The event sender: takes undelivered events from the outbox and delivers them to every
configured destination, at least once, in order, retrying with backoff for as long as a
destination stays down (docs/events.md).

One task per destination, so a destination that is down or slow delays nobody else, and
never the mail: the sender reads and writes the outbox through its own thread and its
own short transactions, not through the spool writer that records outcomes. On SQLite
its writes (a claim, an acknowledgement) are a few rows each and wait at most the spool
writer's current commit.

A batch is claimed with a lease before it is sent and deleted once acknowledged. A crash
between the two leaves the lease: at the next start those events are counted
(``recovered_in_flight``, logged and shown by GET /api/events) and sent again, so the
duplicates a crash causes are at most that count.

An idle sender is woken when outcomes commit (``outcomes_committed``, called by the spool
writer's thread right after the commit that wrote their events), so that an event
leaves within one claim and one send of its commit; it also polls every
``poll_interval`` for events it was not told about: those written by other nodes
sharing the database, and any commit whose wake-up it missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ParamSpec, Protocol, TypeVar

from vmta.domain.clock import Clock
from vmta.resilience.outage_log import OutageLog
from vmta.resilience.supervisor import supervised
from vmta.store.event_outbox import DestinationStatus, EventOutbox, PendingEvent

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


class EventDeliveryFailed(Exception):
    """A destination did not take a batch. ``acknowledged``: how many events from the
    start of the batch it did take (they are not sent again)."""

    def __init__(self, reason: str, acknowledged: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.acknowledged = acknowledged


class EventDestination(Protocol):
    name: str
    kind: str  # http, rabbitmq
    target: str  # where it sends, for GET /api/events: never with credentials
    event_types: frozenset[str]

    async def send(self, batch: Sequence[PendingEvent]) -> None:
        """Deliver ``batch`` in order, or raise EventDeliveryFailed."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class SenderSettings:
    claim_batch: int = 100  # events claimed (and at most in flight) per destination
    lease_seconds: float = 300.0
    poll_interval: float = 1.0  # seconds between looks at an empty outbox
    retry_initial: float = 1.0  # first wait after a failure; doubles each time
    retry_max: float = 300.0  # longest wait between two tries of a failing destination


class EventSender:
    def __init__(
        self,
        outbox: EventOutbox,
        destinations: Sequence[EventDestination],
        clock: Clock,
        settings: SenderSettings | None = None,
    ) -> None:
        self._outbox_outage = OutageLog(log, "reading the event outbox")
        self.outbox = outbox
        self.destinations = list(destinations)
        self.clock = clock
        self.settings = settings or SenderSettings()
        self.recovered_in_flight = 0
        self.sent: dict[str, int] = {d.name: 0 for d in self.destinations}
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="event-outbox")
        self._tasks: list[asyncio.Task[None]] = []
        # One per destination: each task clears its own before it looks at the outbox, so
        # that a commit during the look (or during a send) is never missed.
        self._wakes: dict[str, asyncio.Event] = {d.name: asyncio.Event() for d in self.destinations}
        self._stop = asyncio.Event()
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake_pending = threading.Event()  # a wake-up is on its way to the loop

    async def _db(self, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, functools.partial(func, *args, **kwargs))

    async def start(self) -> None:
        if not self.destinations:
            return
        self._loop = asyncio.get_running_loop()
        self.recovered_in_flight = await self._db(self.outbox.release_own)
        if self.recovered_in_flight:
            log.warning(
                "%d event(s) were being sent when vmta last stopped; they will be sent again"
                " and may arrive twice",
                self.recovered_in_flight,
            )
        self._tasks = [
            asyncio.create_task(
                supervised(f"events-{d.name}", functools.partial(self._run, d), clock=self.clock),
                name=f"events-{d.name}",
            )
            for d in self.destinations
        ]

    def wake(self) -> None:
        """Look for new events now (new outcomes were recorded). On the event loop."""
        self._wake_pending.clear()
        for event in self._wakes.values():
            event.set()

    def outcomes_committed(self) -> None:
        """Outcomes, and so their events, were just committed: wake the senders. Safe
        from any thread (the spool writer's calls it); many commits before the loop
        runs the wake-up cost one."""
        loop = self._loop
        if loop is None or self._stopping or self._wake_pending.is_set():
            return
        self._wake_pending.set()
        try:
            loop.call_soon_threadsafe(self.wake)
        except RuntimeError:  # the loop is closed: vmta is stopping
            self._wake_pending.clear()

    async def stop(self, grace: float = 5.0) -> None:
        """Let each destination finish the batch it is sending (up to ``grace``)."""
        self._stopping = True
        self._stop.set()
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks, timeout=grace)
            for task in pending:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*pending, return_exceptions=True)
        for destination in self.destinations:
            with contextlib.suppress(Exception):
                await destination.close()
        self._thread.shutdown(wait=True)

    def describe(self) -> list[dict[str, Any]]:
        """The configured destinations and what this node sent to each since it started."""
        described = []
        for d in self.destinations:
            entry: dict[str, Any] = {
                "name": d.name,
                "type": d.kind,
                "target": d.target,
                "sent": self.sent.get(d.name, 0),
            }
            link = getattr(d, "link", None)  # a destination with a connection of its own
            if link is not None:
                entry["connection"] = link.report()
            described.append(entry)
        return described

    async def status(self) -> list[DestinationStatus]:
        return await self._db(self.outbox.status, self.clock.now())

    async def _run(self, destination: EventDestination) -> None:
        delay = self.settings.retry_initial
        # A destination with a connection of its own (RabbitMQ) is tried again at most
        # its own ``retry_max`` apart, whatever VMTA_EVENTS_RETRY_MAX says.
        retry_max = min(self.settings.retry_max, getattr(destination, "retry_max", float("inf")))
        last_error: str | None = None
        woken = self._wakes[destination.name]
        busy = False  # the last look found events: more are likely
        while not self._stopping:
            woken.clear()  # before the look: a commit from now on sets it again
            try:
                batch = await self._claim(destination.name, look_first=not busy)
            except Exception as exc:  # polled every second: one traceback per outage
                self._outbox_outage.failed(
                    "reading the event outbox for %s failed", exc, destination.name
                )
                batch = []
            else:
                self._outbox_outage.worked()
            busy = bool(batch)
            if not batch:
                await self._idle(woken)
                continue
            error: str | None = None
            acknowledged = len(batch)
            try:
                await destination.send(batch)
            except EventDeliveryFailed as exc:
                error, acknowledged = exc.reason, exc.acknowledged
            except Exception as exc:  # a destination must never stop the sender
                log.exception("sending events to %s failed unexpectedly", destination.name)
                error, acknowledged = f"internal error: {type(exc).__name__}", 0
            await self._settle(destination.name, batch[:acknowledged], error)
            if error is None:
                delay = self.settings.retry_initial
                if last_error is not None:
                    log.info("event destination %s works again", destination.name)
                last_error = None
                continue
            if error != last_error:
                log.warning(
                    "event destination %s: %s; %d event(s) wait, retrying in %.0f s",
                    destination.name,
                    error,
                    len(batch) - acknowledged,
                    delay,
                )
            last_error = error
            await self._backoff(delay)
            delay = min(delay * 2, retry_max)

    async def _claim(self, name: str, *, look_first: bool = True) -> list[PendingEvent]:
        """Claim the next batch. ``look_first``: read whether there is one before the
        claim's write (an idle sender's poll must not take SQLite's write lock for
        nothing); skipped while busy, where the read would only cost a transaction."""
        now = self.clock.now()
        if look_first and not await self._db(self.outbox.has_due, name, now):
            return []
        return await self._db(
            self.outbox.claim,
            name,
            self.settings.claim_batch,
            now,
            now + self.settings.lease_seconds,
        )

    async def _settle(self, name: str, done: Sequence[PendingEvent], error: str | None) -> None:
        """Record what the destination took (and the error), retrying while the store
        fails: an acknowledgement not stored means those events go out again."""
        delay = 0.5
        while True:
            try:
                now = self.clock.now()
                if done:
                    await self._db(self.outbox.acknowledge, name, [e.id for e in done], now)
                    self.sent[name] = self.sent.get(name, 0) + len(done)
                if error is not None:
                    await self._db(self.outbox.note_error, name, error, now)
                return
            except Exception:
                if self._stopping:
                    return
                log.exception("storing event acknowledgements for %s failed; retrying", name)
                await self._backoff(delay)
                delay = min(delay * 2, 30.0)

    async def _idle(self, woken: asyncio.Event) -> None:
        """Wait for the poll interval, a wake-up or the stop, whichever comes first."""
        await self._sleep(self.settings.poll_interval, woken, self._stop)

    async def _backoff(self, seconds: float) -> None:
        """Wait after a failure: new events do not shorten it, only the stop does."""
        await self._sleep(seconds, self._stop)

    async def _sleep(self, seconds: float, *events: asyncio.Event) -> None:
        if self._stopping:
            return
        waiters: set[asyncio.Future[Any]] = {asyncio.ensure_future(self.clock.sleep(seconds))}
        waiters |= {asyncio.ensure_future(e.wait()) for e in events}
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
