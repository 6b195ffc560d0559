"""Why an SMTP client session could not be set up or go on.

Replies to a transaction are values (``TransactionResult``); these errors are for the
session itself. ``SessionDeferred`` is temporary (a 4xx greeting, EHLO or AUTH reply, a
timeout, a dropped connection, a failed TLS handshake, a malformed reply);
``SessionRejected`` is permanent until the server or the configuration changes (a 5xx
greeting, HELO or AUTH reply, credentials the server gives no way to use, and
``CleartextAuthRefused``). ``reply`` holds the server's reply when there was one.
"""

from __future__ import annotations

from typing import Literal

from vmta.domain.attempts.smtp_reply import SmtpReply
from vmta.domain.errors import PermanentError, TemporaryError, VmtaError

Stage = Literal["greeting", "ehlo", "starttls", "auth", "transaction", "reset"]


class SessionFailed(VmtaError):
    """The session could not be set up or cannot go on; see the subclasses."""

    def __init__(
        self,
        stage: Stage,
        reason: str,
        reply: SmtpReply | None = None,
        *,
        timed_out: bool = False,
    ) -> None:
        self.stage: Stage = stage
        self.reason = reason
        self.reply = reply
        # The server did not answer in time (MailerQ's result "timeout"); else, without a
        # reply, the connection was lost or garbled.
        self.timed_out = timed_out
        # Where the session was when it failed, in MailerQ's vocabulary (SmtpSession).
        self.mq_state: str | None = None
        super().__init__(reason)


class SessionDeferred(SessionFailed, TemporaryError):
    """Try again later (another MX, another connection, a later attempt)."""


class SessionRejected(SessionFailed, PermanentError):
    """It will fail the same way until the server or the configuration changes."""


class CleartextAuthRefused(SessionRejected):
    """Credentials would have gone over an unencrypted channel to a remote host."""


def failure(stage: Stage, reason: str, reply: SmtpReply) -> SessionFailed:
    """The error for a reply that ends the session: permanent for 5xx, else temporary."""
    if reply.is_permanent:
        return SessionRejected(stage, reason, reply)
    return SessionDeferred(stage, reason, reply)
