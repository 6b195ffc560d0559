"""What became of each recipient: the retry policy turns a verdict into an outcome, the
outcome is stored in the spool, written to the delivery log, and a failure queues a
bounce to the sender (RFC 3464).

Every recipient the engine holds in memory leaves it through here (delivered, deferred,
failed, held, released or found deleted), so this is also where the in-memory count goes
down again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from vmta.delivery.engine.occupancy import Occupancy
from vmta.delivery.outcomes.activity_log import ActivityLog
from vmta.delivery.outcomes.bounces import BounceMailer
from vmta.delivery.outcomes.delivery_log import DeliveryLog, iso_time
from vmta.delivery.routing.router import Deliver, Hold, Refuse
from vmta.delivery.throttles.throttle_backoffs import ThrottleBackoffs
from vmta.domain.attempts.delivery_outcome import ReplyLine, Verdict
from vmta.domain.attempts.engine_metrics import EngineMetrics, NoMetrics
from vmta.domain.attempts.message_retry_policy import next_attempt
from vmta.domain.attempts.retry_schedule import RetrySchedule
from vmta.domain.attempts.spool_port import Spool
from vmta.domain.attempts.spool_records import DELIVERED, FAILED, QUEUED, Job, Outcome
from vmta.domain.attempts.transport_port import Conversation, SessionFacts
from vmta.domain.clock import Clock
from vmta.domain.errors import TemporaryError

log = logging.getLogger(__name__)

Peer = tuple[str | None, str | None]  # (IP address, host name) of a remote server


@dataclass(frozen=True)
class RecorderSettings:
    retry: RetrySchedule = field(default_factory=RetrySchedule)
    # Storing an outcome is retried while the store fails, this many times with growing
    # pauses (0.5 s doubling, at most 30 s: about four minutes in all), then given up with
    # an error: the recipient stays leased until its lease expires and is then tried
    # again, so nothing is lost, but no loop runs forever.
    store_tries: int = 12


class OutcomeRecorder:
    def __init__(
        self,
        *,
        spool: Spool,
        clock: Clock,
        settings: RecorderSettings,
        delivery_log: DeliveryLog,
        occupancy: Occupancy,
        bounces: BounceMailer | None,
        metrics: EngineMetrics | None = None,
        backoffs: ThrottleBackoffs | None = None,
        activity: ActivityLog | None = None,
    ) -> None:
        self._metrics = metrics or NoMetrics()
        self._activity = activity or ActivityLog("off")
        self._backoffs = backoffs
        self._spool = spool
        self._clock = clock
        self._settings = settings
        self._log = delivery_log
        self._occupancy = occupancy
        self._bounces = bounces
        # False once the engine has drained at stop: an outcome the store refuses then is
        # given up at once (its recipient is tried again after its lease) instead of retried.
        self.retry_storing = True

    # ---- the ways out --------------------------------------------------------------------

    async def finish(
        self,
        jobs: Sequence[Job],
        verdicts: Sequence[tuple[Verdict, ReplyLine]],
        decision: Deliver | Refuse | None,
        conversation: Conversation | None,
        peer: Peer | None = None,
        *,
        session: SessionFacts | None = None,
    ) -> set[int]:
        """An attempt ended (or was decided without one): store, log, bounce. Returns
        the recipients whose outcome could not be stored (see ``RecorderSettings``).
        ``peer`` names the server a failed session talked to, when there is no
        conversation to ask; ``session`` what the attempt's connection was."""
        now = self._clock.now()
        outcomes = [
            self.outcome(job, verdict, reply, decision, conversation, now, peer, session)
            for job, (verdict, reply) in zip(jobs, verdicts, strict=True)
        ]
        try:
            unstored = await self._store(outcomes)
        finally:
            self._occupancy.give_back(len(jobs))
        for job, outcome in zip(jobs, outcomes, strict=True):
            self._log_attempt(job, outcome)
            self._activity.outcome(job, outcome)
            if outcome.state == DELIVERED and outcome.recipient_id not in unstored:
                self._metrics.delivered(outcome.at - job.received_at)
        if self._backoffs is not None and isinstance(decision, Deliver):
            # Dynamic Delivery measures each throttle's failure and deferral rates.
            path = decision.path
            for outcome in outcomes:
                self._backoffs.observe(
                    path.throttle_key,
                    path.throttle_program,
                    outcome.outcome_label,
                    outcome.at,
                    origin=path.throttle_origin,
                )
        failed = [(j, o) for j, o in zip(jobs, outcomes, strict=True) if o.state == FAILED]
        if failed and self._bounces is not None:
            await self._bounces.notify(failed, remote=conversation is not None)
        return unstored

    async def defer_all(
        self,
        jobs: Sequence[Job],
        reply: ReplyLine,
        decision: Deliver | None,
        peer: Peer | None = None,
    ) -> set[int]:
        verdicts = [(Verdict.DEFERRED, reply)] * len(jobs)
        return await self.finish(jobs, verdicts, decision, None, peer)

    async def hold(self, job: Job, hold: Hold) -> None:
        """Not sent now, by configuration (a pause, routing that cannot be resolved yet)."""
        now = self._clock.now()
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
            stage="process",  # held by vmta's configuration (a paused IP address)
        )
        try:
            await self._store([outcome])
        finally:
            self._occupancy.give_back(1)
        if hold.attempted:
            self._log_attempt(job, outcome)

    async def release(self, jobs: Sequence[Job], until: float, reason: str) -> None:
        """Give recipients back to the shared queue without an attempt: they wait for a
        throttle, and any node (this one too) may take them when they are due. Their
        memory is freed at once."""
        now = self._clock.now()
        outcomes = [
            Outcome(
                recipient_id=job.recipient_id,
                message_id=job.message_id,
                at=now,
                state=QUEUED,
                next_attempt_at=until,
                attempted=False,
                waiting_reason=reason,
            )
            for job in jobs
        ]
        try:
            await self._store(outcomes)
        finally:
            self._occupancy.give_back(len(jobs))

    def vanished(self, jobs: Sequence[Job]) -> None:
        """The message was deleted by an operator before it went on the wire."""
        self._occupancy.give_back(len(jobs))

    # ---- the retry policy ----------------------------------------------------------------

    def outcome(
        self,
        job: Job,
        verdict: Verdict,
        reply: ReplyLine,
        decision: Deliver | Refuse | None,
        conversation: Conversation | None,
        now: float,
        peer: Peer | None = None,
        session: SessionFacts | None = None,
    ) -> Outcome:
        state, next_at, label = DELIVERED, None, "delivered"
        text = str(reply)
        retry = self._settings.retry
        if verdict is Verdict.FAILED:
            state, label = FAILED, "failed"
        elif verdict is Verdict.DEFERRED:
            # vmta's schedule, or the message's own rules (MailerQ maxattempts, retries,
            # maxdelivertime) where it carries them.
            decision_at = next_attempt(
                job.mq_options,
                attempts=job.attempts + 1,
                received_at=job.received_at,
                expires_at=job.expires_at,
                now=now,
                schedule=retry,
            )
            next_at = decision_at.next_attempt_at
            if next_at is None:
                state, label = FAILED, "failed"
                text = f"{text} ({decision_at.reason})"
            else:
                state, label = QUEUED, "deferred"
        path = decision.path if isinstance(decision, Deliver) else None
        remote_host = path.destination_host if path else None
        remote_ip = None
        if conversation is not None:
            remote_host, remote_ip = conversation.remote_host, conversation.remote_ip
        elif peer is not None:
            remote_ip = peer[0]
            remote_host = peer[1] or remote_host
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
            remote_ip=remote_ip,
            routing_memory=decision.memory if isinstance(decision, Deliver) else None,
            outcome_label=label,
            stage=reply.stage,
            result=reply.ended,
            session_messages=session.messages if session else None,
            remote_dsn=session.dsn if session else None,
            outmtaid=decision.effective_id if isinstance(decision, Deliver) else None,
            ehlo_name=path.ehlo_name if path else None,
        )

    # ---- storing ---------------------------------------------------------------------------

    async def _store(self, outcomes: Sequence[Outcome]) -> set[int]:
        """Store outcomes, retrying those the store refused (bounded: see
        ``RecorderSettings.store_tries``). Each outcome is its own unit: one the store
        keeps refusing does not hold back the others."""
        pending = list(outcomes)
        delay = 0.5
        attempt = 0
        while True:
            attempt += 1
            results = await self._record_each(pending)
            failed = [
                (o, r) for o, r in zip(pending, results, strict=True) if isinstance(r, Exception)
            ]
            if not failed:
                return set()
            pending = [o for o, _ in failed]
            # A database that is away (TemporaryError) is waited for as long as it takes,
            # at most 30 s between tries, so that once it is back the outcome is stored
            # within 30 s: given up, the recipient would stay claimed by this node, its
            # lease renewed, and never sent. Only a refusal by a working store is bounded.
            unavailable = all(isinstance(r, TemporaryError) for _, r in failed)
            if not self.retry_storing or (
                attempt >= self._settings.store_tries and not unavailable
            ):
                break
            log.warning(
                "storing %d outcome(s) failed (%s); retrying in %.1f s",
                len(pending),
                type(failed[0][1]).__name__,
                delay,
            )
            await self._clock.sleep(delay)
            delay = min(delay * 2, 30.0)
        log.error(
            "gave up storing %d outcome(s) (first: recipient %d of message %s): the"
            " recipients stay claimed until their lease expires, then are tried again",
            len(pending),
            pending[0].recipient_id,
            pending[0].message_id,
        )
        return {o.recipient_id for o in pending}

    async def _record_each(self, outcomes: Sequence[Outcome]) -> Sequence[object]:
        """Each outcome's storing, at once: None, or the exception it met. One outcome,
        the usual case, is awaited as it is: ``gather`` would wrap it in a task and a
        gathering future, about 14 µs of CPU per message (docs/PERFORMANCE.md, round 5)."""
        if len(outcomes) == 1:
            try:
                await self._spool.record(outcomes[0])
            except Exception as exc:
                return [exc]
            return [None]
        return await asyncio.gather(
            *(self._spool.record(o) for o in outcomes), return_exceptions=True
        )

    def _log_attempt(self, job: Job, outcome: Outcome) -> None:
        self._log.write(
            {
                "time": iso_time(outcome.at),
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
