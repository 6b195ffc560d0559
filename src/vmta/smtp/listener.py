"""The SMTP injection listener (aiosmtpd): ESMTP with SIZE, PIPELINING, 8BITMIME, STARTTLS
when a certificate is configured, and AUTH PLAIN/LOGIN against the API credentials.

Relaying is allowed only to loopback clients, authenticated clients and configured
networks; everyone else gets a 5xx at RCPT (vmta is never an open relay). AUTH is offered
only under TLS, or to loopback clients, so that a password never crosses a network in the
clear (RFC 4954 §4).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiosmtpd.smtp import SMTP, Envelope, LoginPassword, Session

from vmta.domain.message.arrival import Arrival, IntakePort
from vmta.domain.message.dkim_request import DkimRequestRefused
from vmta.domain.message.mq_message import InvalidMqMessage
from vmta.domain.paths.mail_loops import TOO_MANY_HOPS_REPLY, TooManyHops
from vmta.domain.paths.relay_policy import Network, is_loopback, may_relay
from vmta.resilience.outage_log import OutageLog
from vmta.smtp.auth_gate import AuthGate
from vmta.smtp.chunked_data import ChunkedDataSMTP
from vmta.smtp.mail_path import has_control_character, plain_path
from vmta.smtp.sasl_exchange import SaslExchange
from vmta.smtp.session_counts import SharedSessionCounts
from vmta.smtp.session_registry import SessionCaps, SessionRegistry

log = logging.getLogger(__name__)

# The kernel's queue of connections not yet accepted (listen(2)), shared by every process.
ACCEPT_QUEUE = 1024
MAX_RECIPIENTS = 1000


@dataclass(frozen=True)
class ListenerSettings:
    hostname: str
    max_message_size: int = 50 * 1024 * 1024
    tls_context: ssl.SSLContext | None = None
    relay_networks: Sequence[Network] = field(default_factory=list)
    max_recipients: int = MAX_RECIPIENTS
    caps: SessionCaps = field(default_factory=SessionCaps)
    # The node's session counts shared with the other worker processes (VMTA_WORKERS > 1).
    session_counts: SharedSessionCounts | None = None


class InjectionObserver(Protocol):
    """Told how long each accepted message took to become durable (runtime.metrics)."""

    def injected(self, latency: float) -> None: ...


class InjectionHandler:
    """aiosmtpd handler hooks. Replies follow RFC 5321 and RFC 3463 enhanced codes."""

    def __init__(
        self,
        intake: IntakePort,
        settings: ListenerSettings,
        observer: InjectionObserver | None = None,
    ) -> None:
        self._store_outage = OutageLog(log, "storing injected messages")
        self.intake = intake
        self.settings = settings
        self.observer = observer

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        # aiosmtpd reads pipelined commands in order; say so (RFC 2920).
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        refusal = self.intake.refusal()
        if refusal is not None:
            return refusal  # queue full or disk low: a temporary reply, the client retries
        envelope.mail_from = address  # "<>" for the null reverse-path; see handle_DATA
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        client_ip = session.peer[0] if isinstance(session.peer, tuple) else None
        if not may_relay(client_ip, bool(session.authenticated), self.settings.relay_networks):
            return "554 5.7.1 Relay access denied: authenticate or connect from an allowed network"
        if len(envelope.rcpt_tos) >= self.settings.max_recipients:
            return "452 4.5.3 Too many recipients"  # RFC 5321 §4.5.3.1.10
        if not address or "@" not in address:
            return "501 5.1.3 Bad recipient address syntax"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        client_ip = session.peer[0] if isinstance(session.peer, tuple) else None
        started = time.perf_counter()
        try:
            # The arrival has no name here: the intake takes the message with it, and
            # keeps only the copy it stores (docs/PERFORMANCE.md round 7).
            queue_id = await self.intake.accept(self._take_arrival(session, envelope))
        except TooManyHops:
            return TOO_MANY_HOPS_REPLY  # RFC 5321 §6.3: a loop; nothing is stored
        except InvalidMqMessage as exc:
            # A bad x-mq-* header: the message content is at fault (RFC 3463 X.6.0), and
            # sending it again unchanged would fail the same way, so the reply is permanent.
            reason = "; ".join(exc.messages).replace("\r", " ").replace("\n", " ")[:400]
            return f"554 5.6.0 Bad x-mq-* header: {reason}"
        except DkimRequestRefused as exc:
            # A signing request that cannot be honoured: refused rather than sent unsigned.
            reason = "; ".join(exc.messages).replace("\r", " ").replace("\n", " ")[:400]
            return f"550 5.7.0 {reason}"
        except Exception as exc:
            # A database outage refuses every message: one traceback for the outage,
            # then a line each (resilience/outage_log.py).
            self._store_outage.failed("could not store a message from %s", exc, client_ip)
            return "451 4.3.0 Could not store the message; try again later"
        self._store_outage.worked()
        if self.observer is not None:
            self.observer.injected(time.perf_counter() - started)
        return f"250 2.0.0 OK: queued as {queue_id}"

    def _take_arrival(self, session: Session, envelope: Envelope) -> Arrival:
        """The transaction as an ``Arrival``, its message taken out of the envelope: while
        the spool commits, no session may hold the message as it came next to the copy
        the intake stores with its Received field, or each waiting session holds it
        twice. aiosmtpd starts the next transaction on a new envelope anyway."""
        data = envelope.original_content or b""  # wire form (smtp/chunked_data.py)
        if isinstance(data, str):  # only with decode_data, which vmta never sets
            data = data.encode("utf-8", "surrogateescape")
        envelope.content = envelope.original_content = None
        client_ip = session.peer[0] if isinstance(session.peer, tuple) else None
        sender = envelope.mail_from or ""
        return Arrival(
            # aiosmtpd gives the null reverse-path as "<>"; vmta stores it as "" everywhere
            # (RFC 5321 §4.5.5: bounces are sent with it, and are never bounced).
            mail_from="" if sender.strip() == "<>" else sender,
            recipients=list(envelope.rcpt_tos),
            data=data,
            client_ip=client_ip,
            helo=session.host_name,
            auth_name=_auth_name(session),
            tls=session.ssl is not None,
            may_relay=may_relay(
                client_ip, bool(session.authenticated), self.settings.relay_networks
            ),
            wire_form=True,
        )

    async def handle_exception(self, error: Exception) -> str:
        # Never send exception text to the client (ARCHITECTURE.md pitfall).
        log.error("SMTP session error: %s", type(error).__name__, exc_info=error)
        return "421 4.3.0 Internal error, closing connection"


def _auth_name(session: Session) -> str | None:
    data = session.auth_data
    if isinstance(data, LoginPassword):
        return data.login.decode("utf-8", "replace")
    if session.authenticated and isinstance(data, str | bytes):
        return data.decode() if isinstance(data, bytes) else data
    return None


class InjectionSMTP(ChunkedDataSMTP, SaslExchange):
    """aiosmtpd's SMTP with vmta's rules: DATA read in chunks (smtp/chunked_data.py), AUTH
    offered to loopback clients even without TLS, control characters refused in paths,
    the session caps and stress timeouts of the ``SessionRegistry``, and a 421 on
    shutdown."""

    def __init__(self, *args: Any, registry: SessionRegistry, auth_gate: AuthGate, **kw: Any):
        super().__init__(*args, **kw)
        self.registry = registry
        self.sasl_gate = auth_gate
        self.client = ""
        self._refused = False
        self._in_data = False
        self._leave_after_data = False
        self._idle_deadline = 0.0  # loop time; see _reset_timeout

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is not None:  # the TLS transport after STARTTLS
            super().connection_made(transport)
            return
        peer = transport.get_extra_info("peername")
        self.client = str(peer[0]) if isinstance(peer, tuple) else str(peer)
        refusal = self.registry.admit(self)
        if refusal is not None:
            # Over a cap: answered and closed before aiosmtpd starts the session.
            self._refused = True
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(refusal.encode("ascii") + b"\r\n")
            transport.close()
            return
        super().connection_made(transport)
        if isinstance(peer, tuple) and is_loopback(peer[0]):
            # A loopback connection never leaves the host, so credentials on it are not
            # exposed; elsewhere AUTH waits for STARTTLS (aiosmtpd's auth_require_tls).
            self._auth_require_tls = False

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:
            return
        self.registry.release(self)
        super().connection_lost(error)

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            super().data_received(data)

    def eof_received(self) -> bool | None:
        if self._refused:
            return False
        return super().eof_received()

    def _reset_timeout(self, duration: float | None = None) -> None:
        """aiosmtpd calls this on every command and every chunk received. Its own version
        cancels the timer and arms a new one each time; this one moves a deadline and
        keeps the armed timer while it fires no later than that (it then re-arms itself
        for the rest): one clock read per command instead of a timer. The idle timeout is
        looked up on each reset, so it follows the load (a shorter one re-arms at once)."""
        deadline = self.loop.time() + (duration or self.registry.idle_timeout())
        self._idle_deadline = deadline
        armed = self._timeout_handle
        if armed is not None and not armed.cancelled() and armed.when() <= deadline:
            return
        if armed is not None:
            armed.cancel()
        self._timeout_handle = self.loop.call_at(deadline, self._idle_check)

    def _idle_check(self) -> None:
        if self.loop.time() < self._idle_deadline:  # active since the timer was armed
            self._timeout_handle = self.loop.call_at(self._idle_deadline, self._idle_check)
        else:
            # RFC 5321 §3.8: a server that closes a session says 421 first (aiosmtpd
            # closes silently); the stress timeout ends idle sessions this way.
            transport = self.transport
            if isinstance(transport, asyncio.WriteTransport) and not transport.is_closing():
                transport.write(
                    f"421 4.4.2 {self.registry.hostname} Idle too long, closing"
                    " connection\r\n".encode("ascii", "replace")
                )
            self._timeout_cb()  # type: ignore[no-untyped-call]  # aiosmtpd: logs, closes

    def stress_began(self) -> None:
        if not self._in_data and self.transport is not None:
            self._reset_timeout()

    # ---- shutdown (SessionRegistry.drain) ----

    def shutdown_requested(self) -> None:
        if self._in_data:
            self._leave_after_data = True  # the transaction may finish first
        else:
            self.close_now()

    def close_now(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(self.registry.goodbye.encode("ascii") + b"\r\n")
        transport.close()

    async def smtp_DATA(self, arg: str | None) -> None:
        self._in_data = True
        # The message body is work, not idling: the normal timeout, even under stress.
        self._reset_timeout(self.registry.caps.timeout)
        try:
            await super().smtp_DATA(arg)
        finally:
            self._in_data = False
        if self._leave_after_data or self.registry.stopping:
            self.close_now()

    vars(smtp_DATA).update(vars(SMTP.smtp_DATA))  # aiosmtpd's HELP text for DATA

    # A control character anywhere in the argument of MAIL or RCPT is refused before
    # aiosmtpd parses it: its parser drops some (a TAB is folding white space to it) and
    # keeps others (NUL), and neither is allowed in a path (see mail_path.py). The reply
    # is RFC 5321's 501 with RFC 3463's X.1.7 (sender) or X.1.3 (recipient) syntax code.

    @functools.wraps(SMTP.smtp_MAIL)
    async def smtp_MAIL(self, arg: str | None) -> None:
        if arg is not None and has_control_character(arg):
            await self.push("501 5.1.7 Bad sender address syntax")
            return
        await super().smtp_MAIL(arg)

    @functools.wraps(SMTP.smtp_RCPT)
    async def smtp_RCPT(self, arg: str | None) -> None:
        if arg is not None and has_control_character(arg):
            await self.push("501 5.1.3 Bad recipient address syntax")
            return
        await super().smtp_RCPT(arg)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """The path of MAIL and RCPT: the everyday form without aiosmtpd's costly parser
        (see mail_path.py), everything else by aiosmtpd as before."""
        plain = plain_path(arg)
        if plain is None:
            return super()._getaddr(arg)
        address, parameters = plain
        local = address.rpartition("@")[0]
        if self.local_part_limit and len(local) > self.local_part_limit:
            return None, None  # aiosmtpd's rule, kept (RFC 5321 §4.5.3.1.1)
        return address, parameters


@dataclass
class Listener:
    """The running listener: its server and its sessions."""

    server: asyncio.AbstractServer
    sessions: SessionRegistry

    async def stop(self, grace: float) -> None:
        """Stop accepting; let DATA in progress finish (at most ``grace`` seconds); say
        421 to every session and close it (RFC 5321 §3.8)."""
        self.server.close()
        await self.sessions.drain(grace)
        await self.server.wait_closed()


async def start_listener(
    sock: socket.socket,
    intake: IntakePort,
    settings: ListenerSettings,
    auth_gate: AuthGate,
    observer: InjectionObserver | None = None,
) -> Listener:
    handler = InjectionHandler(intake, settings, observer)
    registry = SessionRegistry(settings.caps, settings.hostname, settings.session_counts)
    registry.start()

    def factory() -> SMTP:
        return InjectionSMTP(
            handler,
            registry=registry,
            auth_gate=auth_gate,
            data_size_limit=settings.max_message_size,
            hostname=settings.hostname,
            ident="vmta ESMTP",
            tls_context=settings.tls_context,
            auth_require_tls=True,
            timeout=settings.caps.timeout,
        )

    loop = asyncio.get_running_loop()
    # One connection accepted per wakeup, not asyncio's default of up to 100: with
    # VMTA_WORKERS > 1 every process waits on this one socket, and a burst of clients
    # (50 sessions opened at once) otherwise went nearly all to whichever process woke
    # first, and stayed there: one process saturated while the other idled
    # (docs/PERFORMANCE.md, "Relay throughput, round 3"). A busy process now picks up its
    # next client only when its loop comes round, so clients go to the less busy one.
    # asyncio takes the per-wakeup count from ``backlog``, which it also passes to
    # listen(); the kernel's queue is set back to its size right after.
    server = await loop.create_server(factory, sock=sock, backlog=1)
    sock.listen(ACCEPT_QUEUE)
    return Listener(server, registry)
