"""The SMTP injection listener (aiosmtpd): ESMTP with SIZE, PIPELINING, 8BITMIME, STARTTLS
when a certificate is configured, and AUTH PLAIN/LOGIN against the API credentials.

Relaying is allowed only to loopback clients, authenticated clients and configured
networks; everyone else gets a 5xx at RCPT (vmta is never an open relay). AUTH is offered
only under TLS, or to loopback clients, so that a password never crosses a network in the
clear (RFC 4954 §4).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from vmta.delivery.intake import Arrival, Intake
from vmta.domain.relay_policy import Network, is_loopback, may_relay
from vmta.smtp.mail_path import plain_path

log = logging.getLogger(__name__)

MAX_RECIPIENTS = 1000


@dataclass(frozen=True)
class ListenerSettings:
    hostname: str
    max_message_size: int = 50 * 1024 * 1024
    tls_context: ssl.SSLContext | None = None
    relay_networks: Sequence[Network] = field(default_factory=list)
    max_recipients: int = MAX_RECIPIENTS
    timeout: float = 300.0  # RFC 5321 §4.5.3.2.7: the server timeout is at least 5 minutes


class InjectionObserver(Protocol):
    """Told how long each accepted message took to become durable (runtime.metrics)."""

    def injected(self, latency: float, source: str = "smtp") -> None: ...


class InjectionHandler:
    """aiosmtpd handler hooks. Replies follow RFC 5321 and RFC 3463 enhanced codes."""

    def __init__(
        self,
        intake: Intake,
        settings: ListenerSettings,
        observer: InjectionObserver | None = None,
    ) -> None:
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
        data = envelope.original_content or b""
        if isinstance(data, str):  # only with decode_data, which vmta never sets
            data = data.encode("utf-8", "surrogateescape")
        client_ip = session.peer[0] if isinstance(session.peer, tuple) else None
        sender = envelope.mail_from or ""
        arrival = Arrival(
            # aiosmtpd gives the null reverse-path as "<>"; vmta stores it as "" everywhere
            # (RFC 5321 §4.5.5: bounces are sent with it, and are never bounced).
            mail_from="" if sender.strip() == "<>" else sender,
            recipients=list(envelope.rcpt_tos),
            data=data,
            client_ip=client_ip,
            helo=session.host_name,
            auth_name=_auth_name(session),
            tls=session.ssl is not None,
        )
        started = time.perf_counter()
        try:
            queue_id = await self.intake.accept(arrival)
        except Exception:
            log.exception("could not store a message from %s", client_ip)
            return "451 4.3.0 Could not store the message; try again later"
        if self.observer is not None:
            self.observer.injected(time.perf_counter() - started)
        return f"250 2.0.0 OK: queued as {queue_id}"

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


class InjectionSMTP(SMTP):
    """aiosmtpd's SMTP, with AUTH offered to loopback clients even without TLS."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and is_loopback(peer[0]):
            # A loopback connection never leaves the host, so credentials on it are not
            # exposed; elsewhere AUTH waits for STARTTLS (aiosmtpd's auth_require_tls).
            self._auth_require_tls = False

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


def make_authenticator(check: Callable[[str, str], bool]) -> Callable[..., AuthResult]:
    """An aiosmtpd authenticator that checks name and secret against the API credentials."""

    def authenticate(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        name = auth_data.login.decode("utf-8", "replace")
        secret = auth_data.password.decode("utf-8", "replace")
        if check(name, secret):
            return AuthResult(success=True, auth_data=auth_data)
        log.info("SMTP AUTH failed for %r from %s", name, session.peer)
        return AuthResult(success=False, handled=False)

    return authenticate


async def start_listener(
    sock: socket.socket,
    intake: Intake,
    settings: ListenerSettings,
    check_credentials: Callable[[str, str], bool],
    observer: InjectionObserver | None = None,
) -> asyncio.AbstractServer:
    handler = InjectionHandler(intake, settings, observer)
    authenticator = make_authenticator(check_credentials)

    def factory() -> SMTP:
        return InjectionSMTP(
            handler,
            data_size_limit=settings.max_message_size,
            hostname=settings.hostname,
            ident="vmta ESMTP",
            tls_context=settings.tls_context,
            authenticator=authenticator,
            auth_require_tls=True,
            timeout=settings.timeout,
        )

    loop = asyncio.get_running_loop()
    return await loop.create_server(factory, sock=sock)
