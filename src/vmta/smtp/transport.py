"""The delivery engine's transport made real: egress connectors plus the SMTP client.

Session-level failures (connect, proxy handshake, greeting, EHLO, STARTTLS, AUTH) defer the
mail rather than fail it, even on a 5xx: they say something about the path or its
configuration (a wrong relay password, a proxy down), not about the message, and an
operator can fix them before the message expires. Per-recipient 5xx replies inside a
transaction do fail recipients.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from vmta.domain.attempts.delivery_outcome import ReplyLine
from vmta.domain.attempts.smtp_reply import SmtpReply
from vmta.domain.attempts.transport_port import (
    ConnectFailed,
    ConversationBroken,
    ConversationLost,
    TransactionReplies,
)
from vmta.domain.errors import PermanentError, TemporaryError
from vmta.domain.paths.egress_path import EgressPath
from vmta.domain.paths.mail_loops import LOOP_CODE, LoopCheck, loops_back_text
from vmta.domain.paths.relay_authentication import defer_unauthenticated
from vmta.domain.paths.relay_tls import RelayTlsPolicies
from vmta.egress.connect_error import EgressError
from vmta.egress.connector import open_connection
from vmta.smtp.client import SessionFailed, SessionOptions, SmtpSession

log = logging.getLogger(__name__)


def reply_line(reply: SmtpReply, stage: str | None = None) -> ReplyLine:
    """The reply on one line, its enhanced code first (each part only if present)."""
    text = reply.text.replace("\n", " ")
    if reply.enhanced:
        text = f"{reply.enhanced} {text}" if text else reply.enhanced
    return ReplyLine(reply.code, text, stage=stage)


@dataclass(frozen=True)
class TransportSettings:
    connect_timeout: float = 30.0
    command_timeout: float = 300.0
    data_timeout: float = 600.0
    starttls: Literal["opportunistic", "never"] = "opportunistic"
    allow_plaintext_auth: bool = False
    relay_tls: RelayTlsPolicies = field(default_factory=RelayTlsPolicies)
    ca_file: str | None = None  # VMTA_RELAY_CA_FILE
    loopback_is_remote: bool = False  # FOR TESTS ONLY (client_options.py says why)


class SmtpConversation:
    def __init__(
        self,
        session: SmtpSession,
        remote_ip: str,
        remote_host: str,
        unauthenticated_relay: str | None = None,
    ) -> None:
        self.session = session
        self.remote_ip: str | None = remote_ip
        self.remote_host = remote_host
        # The relay server's name when vmta presented it no credentials: a demand for
        # them is then a path-configuration problem (domain/paths/relay_authentication.py).
        self.unauthenticated_relay = unauthenticated_relay

    async def send(
        self, mail_from: str, recipients: Sequence[str], data: bytes
    ) -> TransactionReplies:
        session = self.session
        try:
            result = await session.send_wire(mail_from, recipients, data)  # as stored
        except (TemporaryError, OSError) as exc:
            if isinstance(exc, SessionFailed) and exc.stage == "reset":
                # The RSET pipelined ahead of this transaction failed: not attempted.
                raise ConversationLost(str(exc)) from None
            raise ConversationBroken(
                str(exc),
                stage=session.mq_state,
                timed_out=isinstance(exc, SessionFailed) and exc.timed_out,
                messages=session.transactions,
            ) from None
        except PermanentError as exc:  # an address the client will not even send
            reply = ReplyLine(553, f"5.1.3 {exc}", stage="process", ended="invalid")
            return TransactionReplies(mail=reply, rcpts=[reply] * len(recipients), data=None)
        data_stage = "message" if result.after_dot else "data"
        mail = reply_line(result.mail, "mailfrom")
        rcpts = [
            reply_line(r, "mailfrom" if r is result.mail else "rcptto") for r in result.recipients
        ]
        if self.unauthenticated_relay is not None:
            mail, rcpts = defer_unauthenticated(self.unauthenticated_relay, mail, rcpts)
        return TransactionReplies(
            mail=mail,
            rcpts=rcpts,
            data=None if result.data is None else reply_line(result.data, data_stage),
            messages=session.transactions,
            dsn="DSN" in session.extensions,
        )

    async def reset(self) -> None:
        if not self.session.can_send:
            raise ConversationBroken("the server closed the connection")
        try:
            reply = await self.session.reset_for_next()  # pipelined with the next MAIL
        except (TemporaryError, OSError) as exc:
            raise ConversationBroken(str(exc)) from None
        if reply is not None and not reply.is_success:
            raise ConversationBroken(f"RSET answered {reply.one_line()}")

    async def quit(self) -> None:
        await self.session.quit()


class SmtpTransport:
    def __init__(self, settings: TransportSettings, own: LoopCheck | None = None) -> None:
        self.settings = settings
        self.own = own  # never connect to vmta itself: a mail loop

    async def _addresses(self, host: str, port: int) -> list[tuple[str, str]]:
        """The destination's addresses: an IP literal as is, a name through the resolver
        of the operating system (relay servers name their destination directly)."""
        try:
            ipaddress.ip_address(host)
            return [(host, host)]
        except ValueError:
            pass
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=1)  # SOCK_STREAM
        except OSError as exc:
            raise ConnectFailed(f"cannot resolve {host}: {exc.strerror or exc}") from None
        seen: list[tuple[str, str]] = []
        for info in infos:
            pair = (host, str(info[4][0]))
            if pair not in seen:
                seen.append(pair)
        return seen

    async def open(self, path: EgressPath) -> SmtpConversation:
        candidates = list(path.candidates) or await self._addresses(
            path.destination_host, path.destination_port
        )
        own = self.own
        looping = (
            [a for _, a in candidates if own.loops_back(a, path.destination_port)]
            if own is not None
            else []
        )
        if looping:
            candidates = [c for c in candidates if c[1] not in looping]
            if not candidates:
                # Every address of the destination is vmta itself: the mail would come
                # straight back (domain/paths/mail_loops.py). Retrying cannot help.
                text = loops_back_text(path.destination_host, looping[0], path.destination_port)
                raise ConnectFailed(text, permanent=True, reply=ReplyLine(LOOP_CODE, text))
        options = SessionOptions(
            ehlo_name=path.ehlo_name,
            username=path.username,
            password=path.password,
            starttls=self.settings.starttls,
            allow_plaintext_auth=self.settings.allow_plaintext_auth,
            # A relay server's own policy; MX delivery (no relay name) stays opportunistic.
            tls_policy=(
                self.settings.relay_tls.for_relay(path.relay_name)
                if path.relay_name is not None
                else "opportunistic"
            ),
            ca_file=self.settings.ca_file,
            loopback_is_remote=self.settings.loopback_is_remote,
            command_timeout=self.settings.command_timeout,
            data_timeout=self.settings.data_timeout,
        )
        failures: list[str] = []
        stage, timed_out = "connect", False  # where the last try ended (MailerQ's state)
        last_reply: ReplyLine | None = None
        last_peer: tuple[str, str] | None = None  # (host, address) a session began with
        egress_only = True  # every candidate failed before SMTP began
        for host, address in candidates:
            try:
                reader, writer = await open_connection(
                    path.route,
                    address,
                    path.destination_port,
                    timeout=self.settings.connect_timeout,
                )
            except EgressError as exc:
                # The route is named once: the reason often names it already.
                route = "" if exc.route in exc.reason else f" (egress {exc.route})"
                failures.append(f"{exc.stage} stage failed: {exc.reason}{route}")
                # MailerQ's "bind": the source address could not be bound.
                stage = "bind" if exc.reason.startswith("cannot bind") else "connect"
                timed_out = "timed out" in exc.reason
                continue
            try:
                session = await SmtpSession.start(reader, writer, host, options, peer_ip=address)
            except SessionFailed as exc:
                egress_only = False
                last_peer = (host, address)
                failures.append(f"{exc.stage} with {address} failed: {exc.reason}")
                stage = exc.mq_state or "intro"
                timed_out = exc.timed_out
                if exc.reply is not None:
                    last_reply = reply_line(exc.reply, stage)
                continue
            except OSError as exc:
                egress_only = False
                last_peer = (host, address)
                writer.close()
                failures.append(f"connection to {address} failed: {exc}")
                stage, timed_out = "intro", False
                continue
            unauthenticated = path.relay_name if not options.has_credentials else None
            return SmtpConversation(session, address, host, unauthenticated)
        if not candidates:
            failures.append(f"{path.destination_host} has no address")
        # Each distinct failure once (several addresses of one host often fail alike).
        reason = "; ".join(list(dict.fromkeys(failures))[-3:])
        raise ConnectFailed(
            reason,
            reply=last_reply,
            egress=egress_only and bool(candidates),
            remote_ip=last_peer[1] if last_peer else None,
            remote_host=last_peer[0] if last_peer else None,
            stage=stage,
            timed_out=timed_out,
        )
