"""The server side of SMTP AUTH PLAIN and LOGIN (RFC 4954, RFC 4616), with the secret
checked asynchronously.

aiosmtpd calls its authenticator synchronously on the event loop; vmta's check reads the
database and may compute scrypt, so these mechanisms are re-implemented here around an
awaitable ``verify`` (``AuthGate``). Two more fixes over aiosmtpd's own: a response line
longer than the listener's line limit gets one ``500 5.5.6`` (RFC 4954 §6) instead of a
traceback and ``421``; and a refused exchange is answered once, never twice.

aiosmtpd takes every attribute whose name starts with ``auth_`` for a mechanism and
advertises it in EHLO, so nothing here may be named so except the mechanisms themselves
(the gate is ``sasl_gate``).
"""

from __future__ import annotations

import asyncio
import binascii
import functools
import logging
from base64 import b64decode
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, LoginPassword

from vmta.smtp.auth_gate import AuthGate

log = logging.getLogger(__name__)

INVALID = "535 5.7.8 Authentication credentials invalid"  # RFC 4954 §6


class _AuthLineTooLong(Exception):
    """A SASL response line longer than the listener's line limit."""


class SaslExchange(SMTP):
    """aiosmtpd's SMTP with PLAIN and LOGIN checked through an ``AuthGate``."""

    sasl_gate: AuthGate | None = None  # set by the listener's factory

    @functools.wraps(SMTP.smtp_AUTH)
    async def smtp_AUTH(self, arg: str | None) -> None:
        if self.envelope is not None and self.envelope.mail_from is not None:
            # RFC 4954 §4: "The AUTH command is not permitted during a mail transaction."
            await self.push("503 5.5.1 AUTH not permitted during a mail transaction")
            return
        try:
            await super().smtp_AUTH(arg)
        except _AuthLineTooLong:
            # RFC 4954 §6: the client's response was longer than the buffer we keep for
            # it. One reply, and the session goes on unauthenticated.
            await self.push("500 5.5.6 Authentication exchange line is too long")

    async def challenge_auth(
        self,
        challenge: str | bytes,
        encode_to_b64: bool = True,
        log_client_response: bool = False,
    ) -> Any:
        try:
            # Never log the client's response: it is a password (RFC 4954 §14).
            return await super().challenge_auth(challenge, encode_to_b64, False)
        except ValueError as exc:  # StreamReader.readline: longer than the stream's limit
            if "not found" in str(exc):  # the rest of the line has not arrived yet
                await _discard_line(self._reader)
            raise _AuthLineTooLong from None

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        if len(args) == 1:
            blob = await self.challenge_auth("")
            if blob is MISSING:
                return AuthResult(success=False, handled=True)  # already answered
        else:
            blob = _b64(args[1])
            if blob is None:
                await self.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        parts = blob.split(b"\0")
        if len(parts) != 3:  # RFC 4616 §2: [authzid] NUL authcid NUL passwd
            await self.push("501 5.5.2 Can't split auth value")
            return AuthResult(success=False, handled=True)
        if parts[0] and parts[0] != parts[1]:
            # RFC 4616 §2: an authorization identity asks to act as someone else. vmta
            # has no proxy rights, so only the empty one or the user's own is honoured;
            # any other is refused, never silently dropped.
            await self.push("535 5.7.8 Authorization identity must be empty or the user name")
            return AuthResult(success=False, handled=True)
        return await self._verify("PLAIN", LoginPassword(parts[1], parts[2]))

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        if len(args) == 1:
            login = await self.challenge_auth(self.AuthLoginUsernameChallenge)
            if login is MISSING:
                return AuthResult(success=False, handled=True)
        else:
            login = _b64(args[1])
            if login is None:
                await self.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        password = await self.challenge_auth(self.AuthLoginPasswordChallenge)
        if password is MISSING:
            return AuthResult(success=False, handled=True)
        return await self._verify("LOGIN", LoginPassword(login, password))

    async def _verify(self, mechanism: str, data: LoginPassword) -> AuthResult:
        assert self.session is not None and self.sasl_gate is not None
        peer = self.session.peer
        client = str(peer[0]) if isinstance(peer, tuple) else str(peer)
        name = data.login.decode("utf-8", "replace")
        secret = data.password.decode("utf-8", "replace")
        if await self.sasl_gate.verify(client, name, secret):
            return AuthResult(success=True, auth_data=data)
        log.info("SMTP AUTH %s failed for %r from %s", mechanism, name, client)
        return AuthResult(success=False, handled=False, message=INVALID)


def _b64(text: str) -> bytes | None:
    try:
        return b64decode(text.encode("ascii", "replace"), validate=True)
    except (binascii.Error, ValueError):
        return None


async def _discard_line(reader: asyncio.StreamReader) -> None:
    """Read and drop everything up to the end of the current line."""
    while True:
        try:
            await reader.readuntil(b"\n")
            return
        except asyncio.LimitOverrunError as exc:
            await reader.readexactly(exc.consumed)
