"""The inbound SMTP listener (``VMTA_INBOUND_LISTEN``): where receivers send bounces and
complaints back, and mail for forwarding mailboxes arrives.

It takes mail only for the mailboxes of incoming email domains: a mailbox's plain
address, and a bounce mailbox's VERP addresses whose token verifies (or GreenArrow's own
VERP form). Every other recipient is ``550 5.7.1``: it is never a relay, and offers no
AUTH (there is nothing to authenticate for). The domain's ``email_status`` is checked
first at RCPT: ``defer`` answers ``451 4.3.2`` (RFC 3463: system not accepting network
messages), ``disabled`` ``550 5.7.1``. ``MAIL FROM:<>`` is accepted: bounces come with
the null reverse-path (RFC 5321 §4.5.5).

What it accepts is committed before its 250 (store/inbound_mail.py), as injection does,
and processed afterwards (feedback/processor.py). It is the injection listener's
session class with another handler, so it has the same hardening: session caps, line
and message size limits, stress-dependent timeouts, an orderly 421 on shutdown.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from vmta.domain.config.incoming_domain import FORWARDING
from vmta.domain.message.arrival import Arrival, IntakePort
from vmta.feedback.directory import MailboxBook
from vmta.smtp.auth_gate import AuthGate
from vmta.smtp.listener import ACCEPT_QUEUE, InjectionSMTP, Listener, ListenerSettings
from vmta.smtp.session_registry import SessionCaps, SessionRegistry
from vmta.store.inbound_mail import accept_inbound
from vmta.store.store import Store

log = logging.getLogger(__name__)

MAX_RECIPIENTS = 100


@dataclass(frozen=True)
class InboundSettings:
    hostname: str
    max_message_size: int = ListenerSettings.max_message_size
    max_recipients: int = MAX_RECIPIENTS
    caps: SessionCaps = field(default_factory=SessionCaps)


class InboundHandler:
    def __init__(
        self,
        store: Store,
        book: MailboxBook,
        settings: InboundSettings,
        *,
        intake: IntakePort | None = None,
        accepted: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.book = book
        self.settings = settings
        self.intake = intake  # forwarding mailboxes send their copies through it
        self.accepted = accepted  # wakes the feedback processor

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        kept = [line for line in responses if not line[4:].upper().startswith("AUTH")]
        return [*kept[:-1], "250-PIPELINING", kept[-1]]

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if len(envelope.rcpt_tos) >= self.settings.max_recipients:
            return "452 4.5.3 Too many recipients"  # RFC 5321 §4.5.3.1.10
        addressed = await self.book.lookup(address)
        if addressed is None:
            return "550 5.7.1 Relay access denied: not a mailbox of this server"
        if addressed.domain_status == "defer":
            return "451 4.3.2 Mail for this domain is deferred; try again later"
        if addressed.domain_status == "disabled":
            return "550 5.7.1 Mail for this domain is disabled"
        if addressed.mailbox is None:
            return "550 5.7.1 No such mailbox here"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        client_ip = session.peer[0] if isinstance(session.peer, tuple) else None
        sender = envelope.mail_from or ""
        sender = "" if sender.strip() == "<>" else sender
        reports: list[str] = []
        forward_to: list[str] = []
        for rcpt in envelope.rcpt_tos:
            addressed = await self.book.lookup(rcpt)
            box = addressed.mailbox if addressed is not None else None
            if box is not None and box.kind == FORWARDING:
                forward_to.extend(a for a in box.forward_to if a not in forward_to)
            else:
                reports.append(rcpt)
        try:
            if forward_to and self.intake is not None:
                arrival = Arrival(
                    mail_from=sender,
                    recipients=forward_to,
                    data=data,
                    client_ip=client_ip,
                    helo=session.host_name,
                    auth_name=None,
                    tls=session.ssl is not None,
                )
                await self.intake.accept(arrival, via="inbound")
            if reports:
                await asyncio.to_thread(
                    accept_inbound,
                    self.store,
                    received_at=time.time(),
                    mail_from=sender,
                    rcpts=reports,
                    client_ip=client_ip,
                    body=data,
                )
        except Exception:
            log.exception("could not store an inbound message from %s", client_ip)
            return "451 4.3.0 Could not store the message; try again later"
        if self.accepted is not None:
            self.accepted()
        return "250 2.0.0 OK"

    async def handle_exception(self, error: Exception) -> str:
        log.error("inbound SMTP session error: %s", type(error).__name__, exc_info=error)
        return "421 4.3.0 Internal error, closing connection"


class InboundSMTP(InjectionSMTP):
    """The injection session without AUTH."""

    @functools.wraps(SMTP.smtp_AUTH)  # aiosmtpd's HELP text
    async def smtp_AUTH(self, arg: str | None) -> None:  # type: ignore[override]
        await self.push("502 5.5.1 AUTH is not offered here")


async def start_inbound_listener(
    sock: socket.socket, handler: InboundHandler, settings: InboundSettings
) -> Listener:
    registry = SessionRegistry(settings.caps, settings.hostname)

    def refuse(name: str, secret: str) -> bool:
        return False

    gate = AuthGate(refuse)

    def factory() -> SMTP:
        kw: dict[str, Any] = {
            "registry": registry,
            "auth_gate": gate,
            "data_size_limit": settings.max_message_size,
            "hostname": settings.hostname,
            "ident": "vmta ESMTP",
            "auth_require_tls": True,
            "timeout": settings.caps.timeout,
        }
        return InboundSMTP(handler, **kw)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, sock=sock, backlog=1)
    sock.listen(ACCEPT_QUEUE)
    return Listener(server, registry)
