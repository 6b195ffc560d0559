"""The outbound SMTP client: one session over an already-open connection.

``SmtpSession.start`` reads the greeting, says EHLO (HELO when EHLO gets a 5xx), upgrades
with STARTTLS when offered (RFC 3207) and authenticates (RFC 4954) when credentials are
set; ``send`` runs one mail transaction, pipelined when the server offers PIPELINING
(RFC 2920). The connection itself comes from ``vmta.egress.connector``.

Replies to a transaction (MAIL, RCPT, DATA) are values in ``TransactionResult``; the
caller decides per recipient. A session that cannot be set up or go on raises
``SessionFailed`` (``client_errors``): ``SessionDeferred`` or ``SessionRejected``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence

from vmta.domain.attempts.smtp_reply import SmtpReply
from vmta.domain.message.wire_form import to_wire, wire_size
from vmta.domain.paths.relay_tls import TlsDemand
from vmta.smtp.client_auth import AUTHENTICATED, choose_mechanism, run_exchange
from vmta.smtp.client_errors import (
    CleartextAuthRefused,
    SessionDeferred,
    SessionFailed,
    SessionRejected,
    Stage,
    failure,
)
from vmta.smtp.client_options import (
    SessionOptions,
    StartTls,
    cleartext_auth_allowed,
)
from vmta.smtp.client_tls import handshake_failure, session_demand, session_policy, tls_context
from vmta.smtp.client_wire import CLOSING, SmtpWire, command_lines, has_buffered_input
from vmta.smtp.transaction import (
    InvalidEnvelope,
    TransactionResult,
    check_address,
)

# The client's whole vocabulary, importable from here.
__all__ = [
    "CleartextAuthRefused",
    "InvalidEnvelope",
    "SessionDeferred",
    "SessionFailed",
    "SessionOptions",
    "SessionRejected",
    "SmtpSession",
    "Stage",
    "StartTls",
    "TransactionResult",
    "cleartext_auth_allowed",
]

_EXTENSION = re.compile(r"([A-Za-z0-9][A-Za-z0-9-]*)(?:[ =](.*))?")


class SmtpSession(SmtpWire):
    """One SMTP client session; create it with ``await SmtpSession.start(...)``."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        server_name: str,
        options: SessionOptions,
        peer_ip: str,
    ) -> None:
        super().__init__(reader, writer, server_name, options)
        # An RSET to send at the head of the next pipelined group (``reset_for_next``).
        self._reset_owed = False
        self.peer_ip = peer_ip
        self.tls = False
        self.extensions: Mapping[str, str] = {}
        self.auth_mechanism_used: str | None = None
        self.greeting: SmtpReply | None = None
        # Where the session is, in MailerQ's result vocabulary (connect, intro, ehlo,
        # starttls, authplain/authlogin, mailfrom, rcptto, data, message): the step a
        # failure ended the attempt at. And the transactions begun on this connection.
        self.mq_state = "connect"
        self.transactions = 0

    @classmethod
    async def start(
        cls,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        server_name: str,
        options: SessionOptions,
        *,
        peer_ip: str | None = None,
    ) -> SmtpSession:
        """Greeting, EHLO, STARTTLS, AUTH; raises ``SessionFailed`` and closes on failure.

        ``server_name`` is the destination's host name, used for TLS and in error texts.
        ``peer_ip`` is the destination's address; pass it when the streams are a proxy
        tunnel, because the socket's own peer is then the proxy, and the cleartext-AUTH
        rule must judge the destination.
        """
        if peer_ip is None:
            peername = writer.get_extra_info("peername")
            peer_ip = str(peername[0]) if peername else ""
        session = cls(reader, writer, server_name, options, peer_ip)
        try:
            await session._open()
        except SessionFailed as exc:
            exc.mq_state = session.mq_state
            # The server may still be listening (a 554 greeting, a refused AUTH): say
            # goodbye properly (RFC 5321 §3.8); quit() is bounded and closes in any case.
            await session.quit()
            raise
        except BaseException:
            session.close()
            raise
        return session

    async def _open(self) -> None:
        self.mq_state = "intro"
        greeting = await self._read_reply("greeting", self._options.command_timeout)
        self.greeting = greeting
        # RFC 5321 §4.3.2: the connection opening answer is 220 (or 554: no service here).
        if not greeting.is_success:
            raise failure("greeting", f"{self.server_name} greeted with {greeting}", greeting)
        await self._hello()
        demand = session_demand(self._options, self.peer_ip)
        if self._options.starttls == "opportunistic" and "STARTTLS" in self.extensions:
            await self._starttls(demand)
        if demand.require_tls and not self.tls:
            raise SessionDeferred(
                "starttls",
                f"{self.server_name} does not offer STARTTLS, and the TLS policy"
                f" ({session_policy(self._options)}) requires it",
            )
        if self._options.has_credentials:
            await self._authenticate()

    async def _hello(self) -> None:
        self.mq_state = "ehlo"
        name = self._options.ehlo_name
        reply = await self._command(f"EHLO {name}", "ehlo")
        if reply.is_permanent:
            # RFC 5321 §3.2: a server without the extensions answers EHLO with a 5xx;
            # the client then falls back to HELO.
            reply = await self._command(f"HELO {name}", "ehlo")
            if not reply.is_success:
                raise failure("ehlo", f"{self.server_name} refused HELO: {reply}", reply)
            self.extensions = {}
            return
        if not reply.is_success:
            raise failure("ehlo", f"{self.server_name} refused EHLO: {reply}", reply)
        extensions: dict[str, str] = {}
        for line in reply.lines[1:]:  # the first line is the server's greeting
            match = _EXTENSION.fullmatch(line.strip())
            if match:
                extensions[match.group(1).upper()] = (match.group(2) or "").strip()
        self.extensions = extensions

    async def _starttls(self, demand: TlsDemand) -> None:
        self.mq_state = "starttls"
        reply = await self._command("STARTTLS", "starttls")
        if reply.code == CLOSING or (reply.code != 220 and demand.require_tls):
            raise failure("starttls", f"{self.server_name} refused STARTTLS: {reply}", reply)
        if reply.code != 220:
            # RFC 3207 §4: after a refusal the client decides whether to go on. This is
            # opportunistic TLS, so we go on in cleartext; AUTH is still guarded.
            return
        if has_buffered_input(self._reader):
            # Bytes received before the handshake must not be read as if they came over
            # TLS (the STARTTLS command injection attack, RFC 3207 §6 / CVE-2011-0411).
            self._broken()
            raise SessionDeferred(
                "starttls", f"{self.server_name} sent data after its 220 to STARTTLS"
            )
        timeout = self._options.command_timeout
        try:
            async with asyncio.timeout(timeout):
                await self._writer.start_tls(
                    tls_context(demand.verify, self._options.ca_file if demand.verify else None),
                    # SNI and the name the certificate must carry: the destination's host
                    # name as configured (an IP address is checked, never sent as SNI).
                    server_hostname=self.server_name or None,
                    ssl_handshake_timeout=timeout,
                )
        except (OSError, TimeoutError) as exc:
            self._broken()
            reason = handshake_failure(
                exc, self.server_name, credentials=self._options.has_credentials
            )
            raise SessionDeferred("starttls", reason) from None
        self.tls = True
        # RFC 3207 §4.2: forget what was learnt before TLS and ask again.
        self.extensions = {}
        await self._hello()

    async def _authenticate(self) -> None:
        self.mq_state = "authplain"
        if not cleartext_auth_allowed(
            self.peer_ip,
            tls=self.tls,
            allow_plaintext_auth=self._options.allow_plaintext_auth,
            loopback_is_remote=self._options.loopback_is_remote,
        ):
            raise CleartextAuthRefused(
                "auth",
                f"refusing to send credentials in cleartext to {self.peer_ip or '(unknown)'} "
                f"({self.server_name} did not set up TLS)",
            )
        if "AUTH" not in self.extensions:
            raise SessionRejected(
                "auth", f"credentials are set but {self.server_name} does not offer AUTH"
            )
        offered = self.extensions["AUTH"].upper().split()
        mechanism = choose_mechanism(offered)
        if mechanism is None:
            raise SessionRejected(
                "auth",
                f"{self.server_name} offers AUTH {' '.join(offered) or '(nothing)'}, "
                "but vmta speaks only PLAIN and LOGIN",
            )
        self.mq_state = f"auth{mechanism.lower()}"  # authplain, authlogin
        reply = await run_exchange(
            mechanism,
            self._options.username or "",
            self._options.password or "",
            lambda line: self._command(line, "auth"),
        )
        if reply.code == AUTHENTICATED:
            self.auth_mechanism_used = mechanism
            return
        if reply.code < 400:
            # RFC 4954 §4 (and §6): success is 235 and nothing else. Another 2xx/3xx (some
            # test sinks answer AUTH with "250 Ok") is neither success nor a refusal; it is
            # not passed on as the attempt's reply, which would read as a 250 for a
            # deferred attempt.
            raise SessionDeferred(
                "auth",
                f"{self.server_name} answered AUTH {mechanism} with {reply.one_line()} where"
                f" {AUTHENTICATED} (authenticated, RFC 4954 §4) was expected",
            )
        raise failure("auth", f"{self.server_name} refused AUTH {mechanism}: {reply}", reply)

    async def send(
        self, mail_from: str, recipients: Sequence[str], data: bytes
    ) -> TransactionResult:
        """``send_wire`` for a message as given (not dot-stuffed, any line ends)."""
        return await self.send_wire(mail_from, recipients, to_wire(data))

    async def send_wire(
        self, mail_from: str, recipients: Sequence[str], wire: bytes
    ) -> TransactionResult:
        """One transaction: MAIL, RCPT per recipient, DATA. Replies come back as values.
        ``wire`` is the message in wire form (CRLF, dot-stuffed: domain/message/wire_form.py), as
        the spool keeps it: it goes after DATA as it is, then the final dot.

        Raises ``SessionDeferred`` when the connection breaks or times out (the message
        is then not delivered to anyone), ``InvalidEnvelope`` for unusable addresses.
        """
        self._require_usable("transaction")
        check_address(mail_from, "sender", allow_empty=True)
        if not recipients:
            raise InvalidEnvelope("a transaction needs at least one recipient")
        for recipient in recipients:
            check_address(recipient, "recipient", allow_empty=False)
        parameters = ""
        if "SIZE" in self.extensions:  # RFC 1870 §6
            parameters += f" SIZE={wire_size(wire)}"
        if "8BITMIME" in self.extensions and not wire.isascii():  # RFC 6152 §3
            parameters += " BODY=8BITMIME"
        mail = f"MAIL FROM:<{mail_from}>{parameters}"
        rcpts = [f"RCPT TO:<{recipient}>" for recipient in recipients]
        timeout = self._options.command_timeout
        self.transactions += 1
        self.mq_state = "mailfrom"

        if "PIPELINING" in self.extensions:
            mail_reply, rcpt_replies, data_reply = await self._pipelined(mail, rcpts)
        else:
            mail_reply, rcpt_replies, data_reply = await self._one_by_one(mail, rcpts)

        if not mail_reply.is_success:
            return TransactionResult(mail_reply, (mail_reply,) * len(rcpts), None)
        self.mq_state = "rcptto"
        recipient_replies = tuple(rcpt_replies)
        if not any(reply.is_success for reply in recipient_replies):
            if data_reply is not None and data_reply.code == 354:
                # RFC 2920 §3.1: DATA was accepted although no RCPT was; "the client SMTP
                # should send a single dot". Its reply delivers nothing to anyone.
                self._writer.write(b".\r\n")
                await self._read_reply("transaction", timeout)
            await self._quiet_reset()
            return TransactionResult(mail_reply, recipient_replies, None)
        self.mq_state = "data"
        if data_reply is None or data_reply.code != 354:
            await self._quiet_reset()
            return TransactionResult(mail_reply, recipient_replies, data_reply)

        self.mq_state = "message"
        data_timeout = self._options.data_timeout
        # RFC 5321 §4.5.2: the data ends with CRLF "." CRLF; wire form ends with CRLF. Two
        # writes, not one of a concatenation: no copy of the body is made for it.
        self._writer.write(wire)
        self._writer.write(b".\r\n")
        await self._drain(data_timeout)
        final = await self._read_reply("transaction", data_timeout)
        # RFC 5321 §4.1.1.4: after the end-of-data reply the transaction is over either
        # way; the session is ready for the next MAIL.
        return TransactionResult(mail_reply, recipient_replies, final, after_dot=True)

    async def _pipelined(
        self, mail: str, rcpts: list[str]
    ) -> tuple[SmtpReply, list[SmtpReply], SmtpReply | None]:
        # RFC 2920 §3.1: MAIL, the RCPTs and DATA go in one write; DATA is last in the
        # group because its answer decides what we send next. We read the replies before
        # draining: waiting for the write buffer to empty while the server's replies pile
        # up unread can deadlock on very long recipient lists.
        timeout = self._options.command_timeout
        owed, self._reset_owed = self._reset_owed, False
        commands = ["RSET", mail, *rcpts, "DATA"] if owed else [mail, *rcpts, "DATA"]
        self._writer.write(command_lines(commands))
        if owed:
            # Replies come in order: until the RSET's, the server has answered nothing of
            # this transaction, and without 354 and the final dot nothing is delivered. A
            # connection found dead here (a server that closed it while idle) or an RSET
            # refused is raised at stage "reset": the message was not attempted. A refused
            # RSET leaves the server's state unknown, so the connection is dropped.
            reset = await self._read_reply("reset", timeout)
            if not reset.is_success:
                self._broken()
                raise SessionDeferred("reset", f"{self.server_name} answered RSET with {reset}")
        # Read in three steps so that a failure says which one it met (mq_state): the
        # MAIL reply, the RCPT replies, the DATA reply. A 421 stands in for every reply
        # after it, as in _read_replies.
        mail_reply = await self._read_reply("transaction", timeout)
        if mail_reply.code == CLOSING:
            rcpt_replies, data_reply = [mail_reply] * len(rcpts), mail_reply
        else:
            if mail_reply.is_success:
                self.mq_state = "rcptto"
            rcpt_replies = await self._read_replies(len(rcpts), "transaction", timeout)
            if rcpt_replies[-1].code == CLOSING:
                data_reply = rcpt_replies[-1]
            else:
                if mail_reply.is_success and any(r.is_success for r in rcpt_replies):
                    self.mq_state = "data"
                data_reply = await self._read_reply("transaction", timeout)
        await self._drain(timeout)
        return mail_reply, rcpt_replies, data_reply

    async def _one_by_one(
        self, mail: str, rcpts: list[str]
    ) -> tuple[SmtpReply, list[SmtpReply], SmtpReply | None]:
        mail_reply = await self._command(mail, "transaction")
        if not mail_reply.is_success:
            return mail_reply, [], None
        self.mq_state = "rcptto"
        replies: list[SmtpReply] = []
        for rcpt in rcpts:
            replies.append(await self._command(rcpt, "transaction"))
            if replies[-1].code == CLOSING:
                # The server is gone; its 421 stands in for every answer still owed.
                replies += [replies[-1]] * (len(rcpts) - len(replies))
                return mail_reply, replies, replies[-1]
        if not any(reply.is_success for reply in replies):
            return mail_reply, replies, None  # RSET instead of DATA
        self.mq_state = "data"
        return mail_reply, replies, await self._command("DATA", "transaction")

    async def reset(self) -> SmtpReply:
        """RSET (RFC 5321 §4.1.1.5): abort any transaction; the reply is a value."""
        self._require_usable("reset")
        return await self._command("RSET", "reset")

    async def reset_for_next(self) -> SmtpReply | None:
        """RSET between two transactions of one connection (RFC 5321 §4.1.1.5). With
        PIPELINING it is not sent now but at the head of the next transaction's group
        (RFC 2920 §3.1 lets RSET stand anywhere in a group): one round trip less per
        message. Returns None then; its reply is checked when that group is read."""
        self._require_usable("reset")
        if "PIPELINING" in self.extensions:
            self._reset_owed = True
            return None
        return await self._command("RSET", "reset")

    async def _quiet_reset(self) -> None:
        """RSET after a transaction that stopped half-way (RFC 5321 §4.1.1.5), so that the
        connection can carry the next message; a failure only marks the session unusable."""
        if not self.can_send:
            return
        try:
            reply = await self._command("RSET", "reset")
        except SessionFailed:
            return  # already marked unusable
        if not reply.is_success:
            self._usable = False
