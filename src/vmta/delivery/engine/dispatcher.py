"""From claimed recipients to connections: route each recipient, queue it on its egress
path's ready queue, and open connections while the path's throttles allow.

Before a connection is opened it must have three things: a connection slot of its
throttle, a message slot of its throttle's pacing for its first message, and a token of
the path's connection rate. On a site (MX delivery from an IP address) the connection's
slot is the site's, and a message of a domain with limits needs a slot of the domain's
throttle as well, which the connection holds while it carries that domain's mail and
swaps for another domain's when it turns to that one. Without all three nothing is
opened and the path is looked at again when the earliest of them can be had, so a
connection never waits for pacing (one whose next message would wait long is closed) and
a low hourly limit never opens more connections than it can feed.

Deliveries that would wait long on a throttle are released to the shared queue (the spool)
without an attempt: their memory is freed, and any node may take them when they are due.

Each connection it opens gets a ``Lease`` (the ``ConnectionPort`` of connection_worker):
the connection's hold on its ready queue and throttle slot, through which it takes its
next deliveries and tells what happened; the queue's state changes only in its methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from vmta.delivery.engine.connection_worker import SPOOL_PAUSE, ConnectionPort
from vmta.delivery.engine.outcome_recorder import OutcomeRecorder
from vmta.delivery.engine.queue_directory import QueueDirectory
from vmta.delivery.engine.ready_queue import Carry, Delivery, Peer, QueuePolicy, ReadyQueue
from vmta.delivery.routing.envelope_sender import EnvelopeSenders
from vmta.delivery.routing.router import Deliver, Hold, Refuse, Router
from vmta.delivery.throttles.host_throttles import HostThrottles
from vmta.delivery.throttles.throttle_backend import HOUR, LocalThrottles, ThrottleBackend
from vmta.delivery.throttles.throttle_backoffs import ThrottleBackoffs
from vmta.domain.attempts.delivery_outcome import ReplyLine, Verdict
from vmta.domain.attempts.engine_metrics import EngineMetrics, NoMetrics
from vmta.domain.attempts.retry_schedule import RetrySchedule
from vmta.domain.attempts.spool_records import Job
from vmta.domain.clock import Clock
from vmta.domain.config.virtual_mta import Limits
from vmta.domain.paths.egress_path import UNLIMITED, EgressPath
from vmta.resilience.outage_log import OutageLog
from vmta.store.database import DatabaseUnavailable

log = logging.getLogger(__name__)
DATABASE_RECHECK = 5.0  # seconds: a recipient released for want of its configuration

Spawn = Callable[[Coroutine[Any, Any, None]], None]
# Runs one connection: (its port to the engine, its first delivery).
OpenConnection = Callable[[ConnectionPort, Delivery], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class DispatchSettings:
    max_messages_per_connection: int = 1000
    idle_timeout: float = 5.0  # close a connection that has had nothing to send this long
    # Connections per throttle when its limit is 0 (unlimited): "unlimited" means the
    # operator sets no limit, not that a backlog of 10,000 opens 10,000 sockets.
    unlimited_connections: int = 20
    failures_before_delay: int = 3  # consecutive failures that delay a path (ready_queue)
    failure_delay: float = 60.0  # seconds before a delayed path is probed again
    failure_memory: float = 3600.0  # a failing path is remembered this long after its last failure
    max_connection_rate: float = 10.0  # new connections a second per path (0: no cap)
    # A connection whose next message must wait longer than this for its pacing slot is
    # closed rather than kept idle (receivers close idle sessions, some within a second).
    pacing_keep_open: float = 0.5
    release_after: float = 60.0  # deliveries expected to wait longer go back to the spool
    # ... due again after their expected wait, but at most this much later, so that a limit
    # raised meanwhile applies to them soon.
    throttle_recheck: float = 300.0
    shared_retry: float = 1.0  # a full shared connection limit is asked again this often

    def queue_policy(self) -> QueuePolicy:
        return QueuePolicy(
            failures_before_delay=self.failures_before_delay,
            failure_delay=self.failure_delay,
            failure_memory=self.failure_memory,
            max_connection_rate=self.max_connection_rate,
        )


@dataclass
class _Pump:
    """The dispatcher's bookkeeping for one queue: at most one pump at a time, and one
    timer (the earliest wins)."""

    running: bool = False
    again: bool = False
    wake_at: float | None = None
    timer: asyncio.Task[None] | None = None


class Dispatcher:
    def __init__(
        self,
        *,
        router: Router,
        throttles: ThrottleBackend,
        recorder: OutcomeRecorder,
        clock: Clock,
        retry: RetrySchedule,
        settings: DispatchSettings,
        spawn: Spawn,
        open_connection: OpenConnection,
        metrics: EngineMetrics | None = None,
        backoffs: ThrottleBackoffs | None = None,
        senders: EnvelopeSenders | None = None,
        stopping: asyncio.Event | None = None,
    ) -> None:
        self._routing_outage = OutageLog(log, "reading the configuration to route")
        self._metrics = metrics or NoMetrics()
        self._senders = senders  # VERP: one transaction per recipient
        self._backoffs = backoffs
        self._router = router
        self._throttles = throttles
        self._recorder = recorder
        self._clock = clock
        self._retry = retry
        self.settings = settings
        self._spawn = spawn
        self._open_connection = open_connection
        # The engine's one stopping event: the ready queues end idle connections on it.
        self.stopping = stopping or asyncio.Event()
        self.queues = QueueDirectory(
            settings.queue_policy(), clock, self.stopping, self._throttle_unused
        )
        self._pumps: dict[ReadyQueue, _Pump] = {}
        self._metrics.watch_ready(self.queues.ready_lengths)

    # ---- routing -------------------------------------------------------------------------

    async def dispatch(self, jobs: list[Job]) -> None:
        by_message: dict[str, list[Job]] = {}
        for job in jobs:
            by_message.setdefault(job.message_id, []).append(job)
        for message_jobs in by_message.values():
            try:
                await self._route(message_jobs)
            except DatabaseUnavailable as exc:
                # The configuration could not be read: not an attempt (no event, no retry
                # counted). Released, due again shortly, once the database takes it.
                self._routing_outage.failed(
                    "routing message %s failed; released until the database answers",
                    exc,
                    message_jobs[0].message_id,
                )
                await self._recorder.release(
                    message_jobs, self._clock.now() + DATABASE_RECHECK, "Waiting for the database."
                )
            except Exception as exc:
                log.exception("routing message %s failed", message_jobs[0].message_id)
                reply = ReplyLine(
                    451, f"4.3.0 internal routing error: {type(exc).__name__}", stage="process"
                )
                await self._recorder.defer_all(message_jobs, reply, None)
            else:
                self._routing_outage.worked()

    async def _route(self, jobs: list[Job]) -> None:
        now = self._clock.now()
        first = jobs[0]
        # A message's own maxdelivertime (in expires_at) replaces the default lifetime.
        own_lifetime = bool(first.mq_options and "maxdelivertime" in first.mq_options)
        expired = not own_lifetime and self._retry.expired(first.received_at, now)
        if expired or now >= first.expires_at:
            # RFC 3463 X.4.7: delivery time expired. Said by vmta, not by a remote server.
            reply = ReplyLine(550, "5.4.7 Message expired in queue", stage="process")
            await self._recorder.finish(jobs, [(Verdict.FAILED, reply)] * len(jobs), None, None)
            return
        # Recipients of one message may route differently (routing rules by domain).
        # Every recipient is decided before any is acted on: when routing one fails (the
        # database away), the caller releases or defers the whole message, so none of its
        # recipients may have been held or finished already (that would handle it twice).
        decisions = [(job, await self._router.decide(job)) for job in jobs]
        groups: dict[tuple[object, ...], tuple[Deliver, list[Job]]] = {}
        for job, decision in decisions:
            if isinstance(decision, Hold):
                await self._recorder.hold(job, decision)
            elif isinstance(decision, Refuse):
                verdict = decision.reply.verdict()
                await self._recorder.finish([job], [(verdict, decision.reply)], decision, None)
            elif decision.path.key in groups:
                groups[decision.path.key][1].append(job)
            else:
                groups[decision.path.key] = (decision, [job])
        split = self._senders is not None and await self._senders.per_recipient(first.mail_from)
        for decision, group in groups.values():
            for part in [[job] for job in group] if split else [group]:
                await self._enqueue(Delivery(part, decision))

    # ---- ready queues ----------------------------------------------------------------------

    def _queue(self, path: EgressPath) -> ReadyQueue:
        queue, new = self.queues.queue(path)
        if new:
            self._pumps[queue] = _Pump()
        return queue

    async def _enqueue(self, delivery: Delivery) -> None:
        queue = self._queue(delivery.decision.path)
        now = self._clock.now()
        refusal = queue.refusal(now)
        if refusal is not None:
            # The path is known to be failing: this delivery's attempt fails the same way
            # (for good when the path failed permanently: a mail loop).
            reply = refusal.reply
            if refusal.permanent:
                failed = [(Verdict.FAILED, reply)] * len(delivery.jobs)
                await self._recorder.finish(
                    delivery.jobs, failed, delivery.decision, None, refusal.peer
                )
                return
            await self._recorder.defer_all(delivery.jobs, reply, delivery.decision, refusal.peer)
            return
        wait = self._expected_wait(queue, delivery)
        if wait > self.settings.release_after:
            until = now + min(wait, self.settings.throttle_recheck)
            await self._recorder.release(delivery.jobs, until, self._rate_reason(delivery.throttle))
            return
        self.queues.file(queue, delivery.throttle)
        queue.push(delivery)
        self.pump(queue)

    def limits_of(self, queue: ReadyQueue) -> Limits:
        """The limits of the queue's newest path now (see ``_limits``)."""
        return self._limits(queue.path)

    def _limits(self, path: EgressPath) -> Limits:
        """A path's limits now: as configured, or reduced while its throttle is in
        Dynamic Delivery backoff (read for every connection and message, so the end of a
        backoff applies at once)."""
        if self._backoffs is None:
            return path.limits
        return self._backoffs.limits(path.throttle_key, path.limits, self._clock.now())

    def _connection_limits(self, queue: ReadyQueue) -> Limits:
        """What counts the queue's connections: a site's own cap (no limits of its own),
        else the path's throttle."""
        return UNLIMITED if queue.path.site_throttle else self.limits_of(queue)

    def _expected_wait(self, queue: ReadyQueue, delivery: Delivery) -> float:
        """How long ``delivery`` joining the queue now would wait for its pacing slot, as
        far as this node can tell."""
        per_hour = self._limits(delivery.decision.path).max_messages_per_hour
        if not per_hour:
            return 0.0
        return queue.count(delivery.throttle) * HOUR / per_hour

    # ---- opening connections ---------------------------------------------------------------

    def pump(self, queue: ReadyQueue) -> None:
        """Open connections for the queue while it needs them and its throttles allow (at
        most one pump per queue at a time; a request meanwhile runs it again after)."""
        pump = self._pumps.get(queue)
        if self.stopping.is_set() or pump is None:
            return
        if pump.running:
            pump.again = True
            return
        pump.running = True
        self._spawn(self._pump(queue, pump))

    async def _pump(self, queue: ReadyQueue, pump: _Pump) -> None:
        try:
            while queue.wants_connection():
                if not await self._open_one(queue):
                    break
        except Exception:
            log.exception("opening a connection for %s failed", queue.path.describe())
            self.wake_at(queue, self._clock.now() + 1.0)
        finally:
            pump.running = False
            if pump.again:
                pump.again = False
                self.pump(queue)
            else:
                self.forget_if_idle(queue)

    async def _acquire(self, throttle: str, configured: int, *, own_cap: bool) -> str | None:
        """One connection slot of ``throttle``, limited to ``configured`` (0: vmta's own
        cap when ``own_cap``); None when all are held."""
        if configured or isinstance(self._throttles, LocalThrottles | HostThrottles):
            limit = configured or self.settings.unlimited_connections
            return await self._throttles.acquire_connection(throttle, limit)
        if own_cap and self.queues.open_on(throttle) >= self.settings.unlimited_connections:
            return None  # this node's own cap; a connection that closes pumps again
        # No limit (0) on a shared backend: nothing to share, so the cap above is counted
        # here and Redis is never asked (docs/cluster.md: such paths need no Redis, and go
        # on while it is away).
        return await self._throttles.acquire_connection(throttle, 0)

    async def _open_one(self, queue: ReadyQueue) -> bool:
        now = self._clock.now()
        at = queue.open_at(now)
        if at is None:
            return False  # one probe at a time for a path that has been failing
        if at > now:
            self.wake_at(queue, at)  # delayed, or no token of the connection rate yet
            return False
        configured = self._connection_limits(queue).max_concurrent_connections
        token = await self._acquire(queue.throttle, configured, own_cap=True)
        if token is None:
            if not isinstance(self._throttles, LocalThrottles):
                # Slots held by other nodes come back without telling this one.
                self.wake_at(queue, now + self.settings.shared_retry)
            return False  # locally, a released slot pumps the paths of its throttle
        lease = Lease(self, queue, token)
        for throttle, _ in queue.lines():
            if await self._offer(lease, throttle, opening=True) is not Carry.TAKEN:
                continue
            first = queue.connecting(now, throttle)
            if first is None:  # taken by an idle connection while we asked
                break
            self._spawn(self._open_connection(lease, first))
            return True
        await self._let_go(lease)
        await self._throttles.release_connection(queue.throttle, token)
        return False

    def connection_closed(self, queue: ReadyQueue) -> None:
        """A connection of ``queue`` ended (its slot is released): the slot may serve this
        path or a sibling path that shares its throttle (a.test and b.a.test under
        [*.]a.test)."""
        self.pump(queue)
        self._slot_freed(queue.throttle, queue)

    def _slot_freed(self, throttle: str, but: ReadyQueue | None = None) -> None:
        """A connection slot of ``throttle`` came free: it may serve any queue with
        deliveries of that throttle (an idle connection of one, or a new one)."""
        for other in self.queues.on_throttle(throttle):
            if other is not but and len(other):
                other.may_carry(throttle)
                self.pump(other)

    def wake_at(self, queue: ReadyQueue, when: float) -> None:
        """Pump ``queue`` again at ``when`` (one timer per queue, the earliest wins)."""
        pump = self._pumps.get(queue)
        if self.stopping.is_set() or pump is None:
            return
        if pump.wake_at is not None and pump.wake_at <= when:
            return
        if pump.timer is not None:
            pump.timer.cancel()
        pump.wake_at = when
        pump.timer = asyncio.ensure_future(self._timer(queue, pump, when))

    async def _timer(self, queue: ReadyQueue, pump: _Pump, when: float) -> None:
        await self._clock.sleep(when - self._clock.now())
        pump.wake_at = None
        pump.timer = None
        if len(queue):
            for throttle, _ in queue.lines():
                queue.may_carry(throttle)  # its slot or pacing may have come
            self.pump(queue)
        else:
            self.forget_if_idle(queue)

    def forget_if_idle(self, queue: ReadyQueue) -> None:
        now = self._clock.now()
        at = queue.forget_at(now)
        if at is None:
            return
        if at <= now:
            self.forget(queue)
        else:
            self.wake_at(queue, at)

    def forget(self, queue: ReadyQueue) -> None:
        """Drop an idle path (IP addresses have a path per destination domain, so keeping
        them all would grow without bound)."""
        pump = self._pumps.pop(queue, None)
        if pump is not None and pump.timer is not None:
            pump.timer.cancel()
        self.queues.remove(queue)

    def _throttle_unused(self, throttle: str) -> None:
        """No queue is filed under ``throttle`` any more: a local backend drops its file or
        memory of it (its pacing is kept for the next use)."""
        if isinstance(self._throttles, LocalThrottles | HostThrottles):
            self._throttles.forget(throttle)

    async def release_backlog(
        self, queue: ReadyQueue, throttle: str, path: EgressPath, wait: float
    ) -> None:
        """The next message slot of ``throttle`` is ``wait`` seconds away, longer than
        deliveries are held for: give every delivery waiting for it back to the spool,
        each due about when its turn comes (at most ``throttle_recheck`` from now). Any
        node may take them then."""
        per_hour = self._limits(path).max_messages_per_hour
        interval = HOUR / per_hour if per_hour else 0.0
        now = self._clock.now()
        reason = self._rate_reason(throttle)
        for position, delivery in enumerate(queue.drain(throttle)):
            until = now + min(wait + position * interval, self.settings.throttle_recheck)
            await self._recorder.release(delivery.jobs, until, reason)

    @staticmethod
    def _rate_reason(throttle: str) -> str:
        return f"Waiting for the message rate of {throttle}."

    # ---- what a connection asks and tells (through its Lease) ------------------------------

    async def next_for(self, lease: Lease) -> Delivery | None:
        """The next delivery for an open connection and its pacing slot, or None to
        close it: it has carried its share, the engine stops, its throttle's limit fell
        below what is open, nothing arrived within the idle timeout, or the next pacing
        slot is too far off to keep the connection waiting for it."""
        queue, settings = lease.queue, self.settings
        if lease.carried >= settings.max_messages_per_connection or self.stopping.is_set():
            return None
        limit = self._connection_limits(queue).max_concurrent_connections
        if limit and queue.connections > limit:
            # Its limit fell below what is open (a Dynamic Delivery backoff began):
            # connections close after their message until the limit holds.
            return None

        async def offer(throttle: str) -> Carry:
            return await self._offer(lease, throttle, opening=False)

        idle_timeout = settings.idle_timeout
        # Asked only when the connection may go idle: not a read of the shared state for
        # every message.
        if not len(queue) and await self._yields(queue.throttle):
            # Another process waits for a slot of this throttle and holds fewer: this
            # connection closes as soon as it has nothing to carry.
            idle_timeout = 0.0
        try:
            delivery = await queue.take(idle_timeout, offer, lease.held)
        except Exception:  # the throttle store (Redis) failed: keep the deliveries
            log.exception("reserving the slots of %s failed", queue.path.describe())
            queue.pause(SPOOL_PAUSE)
            return None
        if delivery is not None:
            lease.carried += 1
        return delivery

    async def _yields(self, throttle: str) -> bool:
        try:
            return await self._throttles.yield_to_waiter(throttle)
        except Exception:  # advice only: a connection that keeps its slot is no harm
            log.debug("asking whether to give up a slot of %s failed", throttle, exc_info=True)
            return False

    async def _offer(self, lease: Lease, throttle: str, *, opening: bool) -> Carry:
        """May ``lease``'s connection carry the next delivery of ``throttle`` now? It
        must hold a connection slot of that throttle (when it is not the queue's own and
        has a limit: a domain's, on a site), taken in place of the one it held for
        another domain, and a pacing slot of its rate, waited for if it is close."""
        queue = lease.queue
        lines = dict(queue.lines())
        path = lines.get(throttle)
        if path is None:
            return Carry.BUSY  # nothing waits there any more
        limits = self._limits(path)
        token = None
        if throttle == lease.held and self._over_limit(throttle, limits):
            # Its limit fell below what is open (a Dynamic Delivery backoff began): this
            # connection gives the domain's slot up and carries it no more.
            await self._let_go(lease)
            return Carry.BUSY
        if throttle != queue.throttle and throttle != lease.held:
            configured = limits.max_concurrent_connections
            if configured:
                token = await self._acquire(throttle, configured, own_cap=False)
                if token is None:
                    if not isinstance(self._throttles, LocalThrottles):
                        # Slots held by other nodes come back without telling this one.
                        self.wake_at(queue, self._clock.now() + self.settings.shared_retry)
                    return Carry.BUSY
        while True:
            try:
                wait = await self._throttles.reserve_message(throttle, limits.max_messages_per_hour)
            except Exception:
                if token is not None:
                    with contextlib.suppress(Exception):
                        await self._throttles.release_connection(throttle, token)
                raise
            if wait <= 0:
                break
            self._metrics.throttle_wait(wait)
            if opening or wait > self.settings.pacing_keep_open or self.stopping.is_set():
                if token is not None:  # no one else can use it before that slot either
                    await self._throttles.release_connection(throttle, token)
                if wait > self.settings.release_after:
                    await self.release_backlog(queue, throttle, path, wait)
                else:
                    self.wake_at(queue, self._clock.now() + wait)
                return Carry.PACED
            await self._clock.sleep(wait)
        if throttle != lease.held:
            await self._let_go(lease)
            if token is not None:
                lease.hold(throttle, token)
        return Carry.TAKEN

    def _over_limit(self, throttle: str, limits: Limits) -> bool:
        configured = limits.max_concurrent_connections
        if not configured or not isinstance(self._throttles, LocalThrottles | HostThrottles):
            return False  # a shared backend's count is the cluster's, not known here
        return self._throttles.open_connections(throttle) > configured

    async def _let_go(self, lease: Lease) -> None:
        """The connection no longer carries mail of the domain whose slot it held."""
        held = lease.release()
        if held is not None:
            throttle, token = held
            with contextlib.suppress(Exception):
                await self._throttles.release_connection(throttle, token)
            self._slot_freed(throttle)

    async def connection_failed(
        self,
        queue: ReadyQueue,
        delivery: Delivery,
        reply: ReplyLine,
        *,
        permanent: bool,
        peer: Peer | None,
    ) -> None:
        """A connection got no session. When this delays the path, everything waiting on
        it ends with ``reply``: deferred, one attempt each, and probed again after
        ``failure_delay``; failed when the refusal was for good (a mail loop)."""
        if not queue.failed(delivery, reply, permanent=permanent, peer=peer):
            return
        refusal = queue.refusal(self._clock.now())
        waiting = queue.drain()
        peer = refusal.peer if refusal is not None else peer
        if permanent:
            for ended in waiting:
                failed = [(Verdict.FAILED, reply)] * len(ended.jobs)
                await self._recorder.finish(ended.jobs, failed, ended.decision, None, peer)
            return
        log.warning(
            "%s failed %d time(s) in a row (%s): deferring %d message(s); trying again in %.0f s",
            queue.path.describe(),
            queue.failures,
            reply,
            len(waiting),
            self.settings.failure_delay,
        )
        self.wake_at(queue, queue.delayed_until)
        for ended in waiting:
            await self._recorder.defer_all(ended.jobs, reply, ended.decision, peer)

    async def connection_ended(self, lease: Lease) -> None:
        queue = lease.queue
        queue.closed()
        await self._let_go(lease)
        with contextlib.suppress(Exception):
            await self._throttles.release_connection(queue.throttle, lease.token)
        self.connection_closed(queue)

    # ---- stopping and inspection -----------------------------------------------------------

    def stop(self) -> None:
        """The engine stops (idle connections end on the stopping event): no timer
        pumps a queue any more."""
        self.stopping.set()
        for pump in self._pumps.values():
            if pump.timer is not None:
                pump.timer.cancel()

    async def release_all(self) -> None:
        """At stop: give every delivery still waiting back to the spool, due now."""
        now = self._clock.now()
        for queue in self.queues:
            jobs = [job for delivery in queue.drain() for job in delivery.jobs]
            if jobs:
                with contextlib.suppress(Exception):
                    await self._recorder.release(jobs, now, "Released at shutdown.")

    def path_states(self) -> list[dict[str, Any]]:
        now = self._clock.now()
        return [q.state(now) for q in self.queues]


class Lease:
    """One connection's hold on the engine (the ``ConnectionPort`` the worker runs on):
    its ready queue, the connection slot ``token`` of the queue's throttle, the slot of
    the domain whose mail it carries now (on a site, when that domain has limits), and
    how many messages it has carried."""

    def __init__(self, dispatcher: Dispatcher, queue: ReadyQueue, token: str) -> None:
        self._dispatcher = dispatcher
        self.queue = queue
        self.token = token
        self._held: tuple[str, str] | None = None  # (a domain's throttle, its slot's token)
        self.carried = 1  # the first delivery, whose pacing slot the dispatcher took

    @property
    def held(self) -> str | None:
        """The throttle whose slot the connection holds besides the queue's."""
        return self._held[0] if self._held else None

    def hold(self, throttle: str, token: str) -> None:
        self._held = (throttle, token)

    def release(self) -> tuple[str, str] | None:
        held, self._held = self._held, None
        return held

    @property
    def path(self) -> EgressPath:
        return self.queue.path

    def opened(self) -> None:
        self.queue.opened()

    async def failed(
        self, delivery: Delivery, reply: ReplyLine, *, permanent: bool, peer: Peer | None
    ) -> None:
        await self._dispatcher.connection_failed(
            self.queue, delivery, reply, permanent=permanent, peer=peer
        )

    def put_back(self, delivery: Delivery, *, pause: float = 0.0) -> None:
        self.queue.put_back(delivery, pause=pause)

    async def next(self) -> Delivery | None:
        return await self._dispatcher.next_for(self)

    async def closed(self) -> None:
        await self._dispatcher.connection_ended(self)
