"""The delivery engine: takes claimed recipients, routes them, queues them per egress path,
and runs connections that respect each path's throttles.

Flow (ARCHITECTURE.md): spool → scheduler (``_poll`` and the fast path ``submit``) →
ready queue per egress path (``PathQueue``) → connection workers (``_connection``) →
outcome recorded in the spool (batched) and in the delivery log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from vmta.delivery.bounces import compose_bounce, wants_bounce
from vmta.delivery.clock import Clock
from vmta.delivery.delivery_log import DeliveryLog
from vmta.delivery.egress_health import EgressHealth
from vmta.delivery.inflight_journal import InflightJournal
from vmta.delivery.path import EgressPath
from vmta.delivery.ready_queue import Delivery, PathQueue
from vmta.delivery.router import Deliver, Hold, Refuse, Router
from vmta.delivery.spool_gateway import SpoolGateway
from vmta.delivery.throttle import ConnectionLimiter, MessagePacer
from vmta.delivery.transport import (
    ConnectFailed,
    Conversation,
    ConversationBroken,
    TransactionReplies,
    Transport,
)
from vmta.domain.delivery_outcome import ReplyLine, Verdict, recipient_verdicts
from vmta.domain.egress_route import EgressProtocol
from vmta.domain.retry_schedule import RetrySchedule
from vmta.domain.spool_records import DELIVERED, FAILED, QUEUED, Job, Outcome
from vmta.domain.virtual_mta import Limits

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineSettings:
    retry: RetrySchedule = field(default_factory=RetrySchedule)
    max_messages_per_connection: int = 100
    idle_timeout: float = 5.0  # close a connection that has had nothing to send this long
    lease_seconds: float = 300.0
    poll_interval: float = 1.0
    claim_batch: int = 500
    max_in_memory: int = 20_000  # recipients held in ready queues before polling pauses
    # Connections per throttle when its limit is 0 (unlimited): "unlimited" means the
    # operator sets no limit, not that a backlog of 10,000 opens 10,000 sockets.
    unlimited_connections: int = 20
    # Finished messages (every recipient delivered or failed) are kept this long after they
    # were received, for /api/messages and `vmta queue`, then deleted.
    finished_retention: float = 86_400.0
    purge_interval: float = 60.0
    purge_batch: int = 1000


class DeliveryEngine:
    def __init__(
        self,
        *,
        spool: SpoolGateway,
        router: Router,
        transport: Transport,
        clock: Clock,
        settings: EngineSettings,
        delivery_log: DeliveryLog,
        journal: InflightJournal,
        health: EgressHealth | None = None,
    ) -> None:
        self.spool = spool
        self.router = router
        self.transport = transport
        self.clock = clock
        self.settings = settings
        self.delivery_log = delivery_log
        self.journal = journal
        self.health = health or EgressHealth()
        self.paths: dict[tuple[object, ...], PathQueue] = {}
        # Paths that share a throttle (one limiter): a slot freed by one may serve another.
        self._by_throttle: dict[tuple[str, ...], set[PathQueue]] = {}
        self._limits: dict[tuple[str, ...], Limits] = {}
        self._limiters: dict[tuple[str, ...], ConnectionLimiter] = {}
        self._pacers: dict[tuple[str, ...], MessagePacer] = {}
        self._bodies: dict[str, bytes] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[Any]] = []
        self._poll_now = asyncio.Event()
        self.in_memory = 0
        self.recovered_in_flight = 0
        self.stopping = False
        # Queues a delivery status notification: (recipient, message bytes). Set by the
        # data plane; None sends no bounces (RFC 3464 notifications go through the queue).
        self.bounce: Callable[[str, bytes], Awaitable[str]] | None = None
        self.hostname = "localhost"

    # ---- life cycle --------------------------------------------------------------------

    async def start(self) -> None:
        possibly_sent = self.journal.recover()
        self.recovered_in_flight = len(possibly_sent)
        released = await self.spool.release_own_leases(self.clock.now())
        if possibly_sent:
            log.warning(
                "%d recipient(s) were being delivered when vmta last stopped; their outcome"
                " was not stored, so they will be tried again and may arrive twice",
                len(possibly_sent),
            )
        if released:
            log.info("recovered %d recipient(s) claimed before the last stop", released)
        self._loops = [
            asyncio.ensure_future(self._poll_loop()),
            asyncio.ensure_future(self._heartbeat_loop()),
            asyncio.ensure_future(self._purge_loop()),
        ]

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking work, let transactions in progress finish (up to ``grace``)."""
        self.stopping = True
        for task in self._loops:
            task.cancel()
        for queue in self.paths.values():
            queue.changed.set()
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks, timeout=grace)
            for task in pending:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*pending, return_exceptions=True)
        for task in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- intake ------------------------------------------------------------------------

    def submit(self, jobs: Sequence[Job], body: bytes | None = None) -> None:
        """Fast path: recipients just accepted (already leased to this node)."""
        if not jobs or self.stopping:
            return
        if body is not None:
            self._bodies[jobs[0].message_id] = body
        self.in_memory += len(jobs)
        self._spawn(self._dispatch(list(jobs)))

    def wake(self) -> None:
        """Look for due work now (an operator asked for a retry, config changed)."""
        self._poll_now.set()

    async def _poll_loop(self) -> None:
        while not self.stopping:
            try:
                room = self.settings.max_in_memory - self.in_memory
                if room > 0:
                    now = self.clock.now()
                    jobs = await self.spool.claim_due(
                        now, min(room, self.settings.claim_batch), now + self.settings.lease_seconds
                    )
                    if jobs:
                        self.in_memory += len(jobs)
                        self._spawn(self._dispatch(jobs))
                        if len(jobs) == self.settings.claim_batch:
                            continue  # more may be due: do not wait
            except Exception:
                log.exception("polling the spool failed; trying again")
            self._poll_now.clear()
            sleeper = asyncio.ensure_future(self.clock.sleep(self.settings.poll_interval))
            waker = asyncio.ensure_future(self._poll_now.wait())
            try:
                await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
                waker.cancel()

    async def _heartbeat_loop(self) -> None:
        interval = self.settings.lease_seconds / 3
        while not self.stopping:
            await self.clock.sleep(interval)
            try:
                await self.spool.renew_leases(self.clock.now() + self.settings.lease_seconds)
            except Exception:
                log.exception("renewing leases failed")

    async def _purge_loop(self) -> None:
        """Delete finished messages past their retention, a batch at a time, so that the
        spool does not grow with every message ever sent."""
        while not self.stopping:
            await self.clock.sleep(self.settings.purge_interval)
            try:
                before = self.clock.now() - self.settings.finished_retention
                while not self.stopping:
                    purged = await self.spool.purge_finished(before, self.settings.purge_batch)
                    if purged < self.settings.purge_batch:
                        break
            except Exception:
                log.exception("purging finished messages failed")

    # ---- routing -------------------------------------------------------------------------

    async def _dispatch(self, jobs: list[Job]) -> None:
        by_message: dict[str, list[Job]] = {}
        for job in jobs:
            by_message.setdefault(job.message_id, []).append(job)
        for message_jobs in by_message.values():
            try:
                await self._route(message_jobs)
            except Exception as exc:
                log.exception("routing message %s failed", message_jobs[0].message_id)
                await self._finish(
                    message_jobs,
                    [
                        (
                            Verdict.DEFERRED,
                            ReplyLine(451, f"internal routing error: {type(exc).__name__}"),
                        )
                    ]
                    * len(message_jobs),
                    None,
                    None,
                )

    async def _route(self, jobs: list[Job]) -> None:
        now = self.clock.now()
        first = jobs[0]
        if self.settings.retry.expired(first.received_at, now) or now >= first.expires_at:
            # RFC 3463 X.4.7: delivery time expired. Said by vmta, not by a remote server.
            reply = ReplyLine(550, "5.4.7 Message expired in queue")
            await self._finish(jobs, [(Verdict.FAILED, reply)] * len(jobs), None, None)
            return
        # Recipients of one message may route differently (routing rules by domain).
        groups: dict[tuple[object, ...], tuple[Deliver, list[Job]]] = {}
        for job in jobs:
            decision = await self.router.decide(job)
            if isinstance(decision, Hold):
                await self._hold(job, decision)
                continue
            if isinstance(decision, Refuse):
                await self._finish(
                    [job], [(decision.reply.verdict(), decision.reply)], decision, None
                )
                continue
            key = decision.path.key
            if key in groups:
                groups[key][1].append(job)
            else:
                groups[key] = (decision, [job])
        for decision, group in groups.values():
            self._enqueue(Delivery(group, decision))

    async def _hold(self, job: Job, hold: Hold) -> None:
        now = self.clock.now()
        outcome = Outcome(
            recipient_id=job.recipient_id,
            message_id=job.message_id,
            at=now,
            state=QUEUED,
            next_attempt_at=now + hold.retry_in,
            reply=hold.reason,
            attempted=hold.attempted,
            waiting_reason=None if hold.attempted else hold.reason,
            virtual_mta=hold.chosen,
            effective_virtual_mta=hold.effective,
            outcome_label="deferred",
        )
        await self._store_outcomes([outcome])
        self.in_memory -= 1
        if hold.attempted:
            self._log_attempt(job, outcome)

    def _enqueue(self, delivery: Delivery) -> None:
        path = delivery.decision.path
        self._limits[path.throttle_key] = path.limits  # the newest configuration wins
        queue = self.paths.get(path.key)
        if queue is None:
            queue = PathQueue(path, self._limiter(path), self._pacer(path))
            self.paths[path.key] = queue
            self._by_throttle.setdefault(path.throttle_key, set()).add(queue)
        queue.push(delivery)
        self._pump(queue)

    def _limiter(self, path: EgressPath) -> ConnectionLimiter:
        key = path.throttle_key
        if key not in self._limiters:
            self._limiters[key] = ConnectionLimiter(
                lambda: self._limits[key], fallback=self.settings.unlimited_connections
            )
        return self._limiters[key]

    def _pacer(self, path: EgressPath) -> MessagePacer:
        key = path.throttle_key
        if key not in self._pacers:
            self._pacers[key] = MessagePacer(lambda: self._limits[key], self.clock)
        return self._pacers[key]

    def _pump(self, queue: PathQueue) -> None:
        """Open connections while there is work and the connection limit allows."""
        while (
            not self.stopping
            and len(queue.waiting) > queue.connections
            and queue.limiter.try_acquire()
        ):
            queue.connections += 1
            self._spawn(self._connection(queue))

    # ---- connections ---------------------------------------------------------------------

    async def _connection(self, queue: PathQueue) -> None:
        conversation: Conversation | None = None
        try:
            route = queue.path.route
            external = route.protocol is not EgressProtocol.DIRECT and route.public_ip
            try:
                conversation = await self.transport.open(queue.path)
            except ConnectFailed as exc:
                suspends = (
                    external
                    and exc.egress
                    and route.public_ip
                    and self.health.failed(route.public_ip, exc.reason, self.clock.now())
                )
                if suspends:
                    log.warning(
                        "external MTA %s suspended for %.0f s after %d failures: %s",
                        route.public_ip,
                        self.health.suspension,
                        self.health.threshold,
                        exc.reason,
                    )
                await self._connection_failed(queue, exc)
                return
            if external and route.public_ip:
                self.health.succeeded(route.public_ip)
            sent = 0
            while sent < self.settings.max_messages_per_connection and not self.stopping:
                delivery = await queue.next(self.clock, self.settings.idle_timeout)
                if delivery is None:
                    break
                if sent:
                    try:
                        await conversation.reset()  # RSET between messages (RFC 5321 §4.1.1.5)
                    except ConversationBroken:
                        queue.waiting.appendleft(delivery)
                        conversation = None
                        break
                await queue.pacer.acquire()
                ok = await self._transaction(conversation, delivery)
                sent += 1
                if not ok:
                    conversation = None  # broken: do not reuse
                    break
        finally:
            if conversation is not None:
                with contextlib.suppress(Exception):
                    await conversation.quit()
            queue.connections -= 1
            queue.limiter.release()
            if not self.stopping:
                # The freed connection slot may serve this path or a sibling path that
                # shares its throttle (for example a.test and b.a.test under [*.]a.test).
                self._pump(queue)
                for other in list(self._by_throttle.get(queue.path.throttle_key, ())):
                    if other is not queue and other.waiting:
                        self._pump(other)
            if not queue.waiting and queue.connections == 0:
                self._forget(queue)

    def _forget(self, queue: PathQueue) -> None:
        """Drop an idle path, and its throttle once no path uses it and its pacing has
        nothing left to enforce (IP addresses have a throttle per destination domain, so
        keeping them all would grow without bound)."""
        self.paths.pop(queue.path.key, None)
        key = queue.path.throttle_key
        siblings = self._by_throttle.get(key, set())
        siblings.discard(queue)
        limiter, pacer = self._limiters.get(key), self._pacers.get(key)
        idle = (limiter is None or limiter.open == 0) and (pacer is None or pacer.delay() == 0)
        if not siblings and idle:
            for table in (self._by_throttle, self._limiters, self._pacers, self._limits):
                table.pop(key, None)

    async def _connection_failed(self, queue: PathQueue, exc: ConnectFailed) -> None:
        """No session: if no other connection of this path works, everything waiting for
        it is deferred (or failed, for a permanent refusal) with the reason."""
        log.info("connection to %s failed: %s", queue.path.describe(), exc.reason)
        if queue.connections > 1:
            return  # others are working; this one just could not be added
        verdict = Verdict.FAILED if exc.permanent else Verdict.DEFERRED
        reply = exc.reply or ReplyLine(451 if verdict is Verdict.DEFERRED else 550, exc.reason)
        if exc.reply is not None:
            reply = ReplyLine(exc.reply.code, f"{exc.reply.text} ({exc.reason})")
        while queue.waiting:
            delivery = queue.waiting.popleft()
            await self._finish(
                delivery.jobs, [(verdict, reply)] * len(delivery.jobs), delivery.decision, None
            )

    async def _transaction(self, conversation: Conversation, delivery: Delivery) -> bool:
        """Send one message; record every recipient's outcome. False: connection broken."""
        first = delivery.first
        body = self._bodies.get(first.message_id)
        if body is None:
            body = await self.spool.body(first.message_id)
        if body is None:  # deleted by an operator meanwhile
            self.in_memory -= len(delivery.jobs)
            return True
        ids = [job.recipient_id for job in delivery.jobs]
        self.journal.started(ids)
        healthy = True
        try:
            replies: TransactionReplies = await conversation.send(
                first.mail_from, [job.address for job in delivery.jobs], body
            )
            verdicts = recipient_verdicts(replies.mail, replies.rcpts, replies.data)
        except ConversationBroken as exc:
            healthy = False
            verdicts = [(Verdict.DEFERRED, ReplyLine(451, f"connection lost: {exc}"))] * len(ids)
        await self._finish(delivery.jobs, verdicts, delivery.decision, conversation)
        self.journal.finished(ids)
        return healthy

    # ---- outcomes ----------------------------------------------------------------------

    async def _finish(
        self,
        jobs: Sequence[Job],
        verdicts: Sequence[tuple[Verdict, ReplyLine]],
        decision: Deliver | Refuse | None,
        conversation: Conversation | None,
    ) -> None:
        now = self.clock.now()
        outcomes = [
            self._outcome(job, verdict, reply, decision, conversation, now)
            for job, (verdict, reply) in zip(jobs, verdicts, strict=True)
        ]
        await self._store_outcomes(outcomes)
        self.in_memory -= len(jobs)
        for job, outcome in zip(jobs, outcomes, strict=True):
            self._log_attempt(job, outcome)
        failed = [(j, o) for j, o in zip(jobs, outcomes, strict=True) if o.state == FAILED]
        if failed:
            await self._notify_sender(failed, remote=conversation is not None)
        message_ids = {job.message_id for job in jobs}
        for message_id in message_ids:
            self._bodies.pop(message_id, None)

    async def _store_outcomes(self, outcomes: Sequence[Outcome]) -> None:
        """Record outcomes, retrying while the store fails: an outcome that is not stored
        leaves its recipient leased, and it would be sent again after a restart. Each
        batch is one transaction, so a failed one wrote nothing and may simply be
        repeated."""
        delay = 0.5
        while True:
            try:
                await asyncio.gather(*(self.spool.record(o) for o in outcomes))
                return
            except Exception:
                if self.stopping:
                    raise
                log.exception(
                    "storing %d outcome(s) failed; retrying in %.1f s", len(outcomes), delay
                )
                await self.clock.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _notify_sender(self, failed: list[tuple[Job, Outcome]], *, remote: bool) -> None:
        """Queue an RFC 3464 notification to the envelope sender of the message whose
        recipients failed, unless it is a bounce itself or its sender is null (<>)."""
        first = failed[0][0]
        if self.bounce is None or not wants_bounce(first):
            return
        body = self._bodies.get(first.message_id) or await self.spool.body(first.message_id)
        if body is None:
            return
        notification = compose_bounce(
            failed, remote=remote, reporting_mta=self.hostname, original=body, now=self.clock.now()
        )
        try:
            await self.bounce(first.mail_from, notification)
        except Exception:
            log.exception("could not queue the bounce for message %s", first.message_id)

    def _outcome(
        self,
        job: Job,
        verdict: Verdict,
        reply: ReplyLine,
        decision: Deliver | Refuse | None,
        conversation: Conversation | None,
        now: float,
    ) -> Outcome:
        state, next_at, label = DELIVERED, None, "delivered"
        text = str(reply)
        if verdict is Verdict.FAILED:
            state, label = FAILED, "failed"
        elif verdict is Verdict.DEFERRED:
            attempts = job.attempts + 1
            next_at = self.settings.retry.next_attempt(now, attempts)
            if (
                next_at - job.received_at >= self.settings.retry.max_lifetime
                or next_at >= job.expires_at
            ):
                state, label = FAILED, "failed"
                text = f"{text} (giving up: message expired after {attempts} attempt(s))"
                next_at = None
            else:
                state, label = QUEUED, "deferred"
        path = decision.path if isinstance(decision, Deliver) else None
        remote_host = path.destination_host if path else None
        if conversation is not None:
            remote_host = conversation.remote_host
        return Outcome(
            recipient_id=job.recipient_id,
            message_id=job.message_id,
            at=now,
            state=state,
            next_attempt_at=next_at,
            reply=text,
            virtual_mta=decision.chosen if decision else None,
            effective_virtual_mta=decision.effective if decision else None,
            source_ip=path.route.public_ip if path else None,
            remote_host=remote_host,
            remote_ip=conversation.remote_ip if conversation else None,
            routing_memory=decision.memory if isinstance(decision, Deliver) else None,
            outcome_label=label,
        )

    def _log_attempt(self, job: Job, outcome: Outcome) -> None:
        self.delivery_log.write(
            {
                "time": outcome.at,
                "queue_id": job.message_id,
                "recipient": job.address,
                "outcome": outcome.outcome_label,
                "virtual_mta": outcome.virtual_mta,
                "effective_virtual_mta": outcome.effective_virtual_mta,
                "source_ip": outcome.source_ip,
                "remote_host": outcome.remote_host,
                "remote_ip": outcome.remote_ip,
                "reply": outcome.reply,
                "attempt": job.attempts + 1,
            }
        )

    # ---- inspection ----------------------------------------------------------------------

    def path_states(self) -> list[dict[str, Any]]:
        return [
            {
                "path": q.path.describe(),
                "waiting": len(q.waiting),
                "connections": q.connections,
                "throttle": "/".join(q.path.throttle_key),
            }
            for q in self.paths.values()
        ]
