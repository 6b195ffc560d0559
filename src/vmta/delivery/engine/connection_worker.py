"""One connection of an egress path, from open to QUIT: its first message (whose pacing
slot the dispatcher reserved), then the next ones its ``ConnectionPort`` gives it, RSET
between messages (RFC 5321 §4.1.1.5; sent in the next message's pipelined group when the
server offers PIPELINING, RFC 2920).

The worker knows SMTP sessions, not the engine: what it needs of the engine is the narrow
``ConnectionPort`` (the dispatcher implements it over the path's ready queue and
throttles), so that a connection cannot change queue state behind the queue's back.

The body of each message is read from the spool just before it is sent: the spool is its
only source, so a message an operator deleted is not sent, and no body waits in memory
while its message waits for a throttle.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from vmta.delivery.engine.inflight_journal import InflightJournal
from vmta.delivery.engine.outcome_recorder import OutcomeRecorder
from vmta.delivery.engine.ready_queue import Delivery, Peer
from vmta.delivery.routing.egress_health import EgressHealth
from vmta.delivery.routing.envelope_sender import EnvelopeSenders
from vmta.domain.attempts.delivery_outcome import ReplyLine, Verdict, recipient_verdicts
from vmta.domain.attempts.engine_metrics import EngineMetrics, NoMetrics, route_label
from vmta.domain.attempts.spool_port import Spool
from vmta.domain.attempts.transport_port import (
    ConnectFailed,
    Conversation,
    ConversationBroken,
    ConversationLost,
    SessionFacts,
    TransactionReplies,
    Transport,
)
from vmta.domain.clock import Clock
from vmta.domain.paths.egress_path import EgressPath
from vmta.domain.paths.egress_route import EgressProtocol
from vmta.resilience.outage_log import OutageLog

log = logging.getLogger(__name__)

# A body the spool could not give (the database is away): the delivery waits in memory, on
# its path, and the path opens its next connection this much later. Short enough that
# once the database is back it is sent within seconds (contract: within 60 s).
SPOOL_PAUSE = 5.0


class ConnectionPort(Protocol):
    """What one connection needs of the engine: its path, where its deliveries come
    from and go back to, and where it tells what became of its session."""

    @property
    def path(self) -> EgressPath:
        """The path's newest configuration (host list, EHLO name, credentials)."""
        ...

    def opened(self) -> None:
        """The session is up: the path works."""
        ...

    async def failed(
        self, delivery: Delivery, reply: ReplyLine, *, permanent: bool, peer: Peer | None
    ) -> None:
        """No session: ``delivery`` goes back unattempted, unless this failure delays
        the path, which ends everything waiting on it with ``reply``."""
        ...

    def put_back(self, delivery: Delivery, *, pause: float = 0.0) -> None:
        """``delivery`` was not attempted: another connection takes it (at once, if one
        is idle); ``pause``: no new connection for that long."""
        ...

    async def next(self) -> Delivery | None:
        """The next delivery, its pacing slot taken; None: close the connection."""
        ...

    async def closed(self) -> None:
        """The connection ended: its slot is given back. Never raises."""
        ...


class ConnectionWorker:
    def __init__(
        self,
        *,
        transport: Transport,
        recorder: OutcomeRecorder,
        spool: Spool,
        journal: InflightJournal,
        health: EgressHealth,
        clock: Clock,
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        metrics: EngineMetrics | None = None,
        senders: EnvelopeSenders | None = None,
    ) -> None:
        self._spool_outage = OutageLog(log, "reading message bodies from the spool")
        self._spawn = spawn
        self._senders = senders  # VERP: the envelope sender of a one-recipient delivery
        self._metrics = metrics or NoMetrics()
        self._transport = transport
        self._recorder = recorder
        self._spool = spool
        self._journal = journal
        self._health = health
        self._clock = clock

    async def run(self, port: ConnectionPort, delivery: Delivery) -> None:
        """The life of one connection that the dispatcher opened; ``delivery`` is its
        first message."""
        conversation: Conversation | None = None
        try:
            try:
                conversation = await self._transport.open(port.path)
            except ConnectFailed as exc:
                await self._failed(port, delivery, exc)
                return
            except Exception:  # a fault of vmta's own: the delivery is kept, never lost
                log.exception("opening a connection for %s failed", port.path.describe())
                port.put_back(delivery, pause=SPOOL_PAUSE)
                return
            port.opened()
            route = port.path.route
            label = route_label(route)
            self._metrics.connection_opened(label)
            if route.protocol is not EgressProtocol.DIRECT and route.public_ip:
                self._health.succeeded(route.public_ip)
            try:
                conversation = await self._deliver(port, conversation, delivery)
            finally:
                self._metrics.connection_closed(label)
        finally:
            if conversation is not None:
                with contextlib.suppress(Exception):
                    await conversation.quit()
            await port.closed()

    async def _deliver(
        self, port: ConnectionPort, conversation: Conversation, delivery: Delivery
    ) -> Conversation | None:
        """Send ``delivery`` and whatever follows on this connection. Returns the
        conversation if it is still usable (to QUIT), else None."""
        current: Delivery | None = delivery
        first = True
        while current is not None:
            if not first:
                try:
                    await conversation.reset()
                except ConversationBroken:
                    port.put_back(current)  # not attempted: it goes again
                    return None
            first = False
            try:
                healthy = await self._transaction(port, conversation, current)
            except Exception:  # before its outcome was handed on: it goes again
                log.exception("delivering message %s failed", current.first.message_id)
                port.put_back(current, pause=SPOOL_PAUSE)
                return None
            if not healthy:
                return None
            current = await port.next()
        return conversation

    async def _failed(self, port: ConnectionPort, delivery: Delivery, exc: ConnectFailed) -> None:
        """No session. The delivery goes back to the queue unattempted, unless this
        failure delays the path, which defers everything waiting (one attempt each)."""
        path = port.path
        where = f"{path.destination_host}:{path.destination_port}"
        log.info("no session with %s: %s", where, exc.reason)
        now = self._clock.now()
        route = path.route
        public_ip = route.public_ip if route.protocol is not EgressProtocol.DIRECT else None
        if public_ip and exc.egress and self._health.failed(public_ip, exc.reason, now):
            log.warning(
                "external MTA %s suspended for %.0f s after %d failures: %s",
                public_ip,
                self._health.suspension,
                self._health.threshold,
                exc.reason,
            )
        # MailerQ's result of a session that ended without a reply: "timeout" for want
        # of an answer, else "error" (refused, unreachable); one with a reply: "error".
        ended = "timeout" if exc.timed_out and exc.reply is None else "error"
        reply = ReplyLine(451, f"4.4.1 {exc.reason}", stage=exc.stage, ended=ended)
        if exc.permanent and exc.reply is not None:
            # vmta's own verdict (a mail loop): it says everything
            reply = ReplyLine(exc.reply.code, exc.reply.text, stage=exc.stage, ended=ended)
        elif exc.reply is not None:
            reply = ReplyLine(
                exc.reply.code, f"{exc.reply.text} ({exc.reason})", stage=exc.stage, ended=ended
            )
        peer = None
        if exc.remote_ip is not None or exc.remote_host is not None:
            peer = (exc.remote_ip, exc.remote_host)
        await port.failed(delivery, reply, permanent=exc.permanent, peer=peer)

    async def _transaction(
        self, port: ConnectionPort, conversation: Conversation, delivery: Delivery
    ) -> bool:
        """Send one message; record every recipient's outcome. False: connection broken."""
        first = delivery.first
        try:
            body = await self._spool.body(first.message_id)
        except Exception as exc:
            # Not attempted: it goes back to the head of its queue, in memory with its
            # path, and the path waits a little before its next connection.
            self._spool_outage.failed(
                "reading message %s from the spool failed; it waits %.0f s on %s",
                exc,
                first.message_id,
                SPOOL_PAUSE,
                port.path.describe(),
            )
            port.put_back(delivery, pause=SPOOL_PAUSE)
            with contextlib.suppress(Exception):
                await conversation.quit()  # healthy, but nothing to send on it for now
            return False
        self._spool_outage.worked()
        if body is None:  # deleted by an operator before it went on the wire
            self._recorder.vanished(delivery.jobs)
            return True
        ids = [job.recipient_id for job in delivery.jobs]
        self._journal.started(ids)
        healthy = True
        session = SessionFacts()
        try:
            sender = first.mail_from
            if self._senders is not None and len(delivery.jobs) == 1:
                sender = await self._senders.sender_for(first)  # VERP
            replies: TransactionReplies = await conversation.send(
                sender, [job.address for job in delivery.jobs], body
            )
            verdicts = recipient_verdicts(replies.mail, replies.rcpts, replies.data)
        except ConversationLost:
            # Found dead before anything of this message reached the server (an idle
            # connection the server had closed): not an attempt; it goes again at once.
            self._journal.finished(ids)
            port.put_back(delivery)  # an idle sibling takes it, or the next connection
            return False
        except ConversationBroken as exc:
            healthy = False
            ended = "timeout" if exc.timed_out else "lost"
            lost = ReplyLine(451, f"4.4.2 connection lost: {exc}", stage=exc.stage, ended=ended)
            verdicts = [(Verdict.DEFERRED, lost)] * len(ids)
            session = SessionFacts(messages=exc.messages or None)
        except Exception as exc:  # a fault of vmta's own: defer, never lose the recipients
            log.exception("sending message %s failed", first.message_id)
            healthy = False
            reply = ReplyLine(
                451,
                f"4.3.0 internal error while sending: {type(exc).__name__}",
                stage="process",
            )
            verdicts = [(Verdict.DEFERRED, reply)] * len(ids)
        else:
            session = SessionFacts(messages=replies.messages, dsn=replies.dsn)
        # The connection goes on with its next message while this outcome commits (one
        # group commit serves many connections); the in-flight journal keeps the
        # recipients open until it has, so a crash meanwhile counts them as possibly sent.
        self._spawn(self._record(delivery, verdicts, conversation, ids, session))
        return healthy

    async def _record(
        self,
        delivery: Delivery,
        verdicts: list[tuple[Verdict, ReplyLine]],
        conversation: Conversation,
        ids: list[int],
        session: SessionFacts,
    ) -> None:
        unstored = await self._recorder.finish(
            delivery.jobs, verdicts, delivery.decision, conversation, session=session
        )
        # An outcome that could not be stored stays open in the journal: after a restart
        # its recipient counts as possibly sent.
        self._journal.finished([i for i in ids if i not in unstored])
