"""What the delivery engine needs from an SMTP conversation, as a small interface.

``vmta.smtp.transport`` implements it with real connections (egress connectors and the
SMTP client); the engine knows nothing of sockets, proxies or TLS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from vmta.domain.attempts.delivery_outcome import ReplyLine
from vmta.domain.errors import TemporaryError
from vmta.domain.paths.egress_path import EgressPath


@dataclass(frozen=True)
class TransactionReplies:
    mail: ReplyLine
    rcpts: Sequence[ReplyLine]
    data: ReplyLine | None  # None when DATA was not sent (every RCPT refused)
    # The connection as it was for this transaction (MailerQ's ``messages`` and ``dsn``):
    # transactions begun on it so far, this one included; whether it offers DSN
    # (RFC 3461). None: not known.
    messages: int | None = None
    dsn: bool | None = None


@dataclass(frozen=True)
class SessionFacts:
    """What an attempt's record tells of its connection besides the peer: see
    ``TransactionReplies``."""

    messages: int | None = None
    dsn: bool | None = None


class ConnectFailed(TemporaryError):
    """No usable SMTP session could be set up (connect, proxy handshake, greeting, EHLO,
    STARTTLS, AUTH). ``permanent`` marks a failure that retrying will not fix, which vmta
    decides itself: the destination is vmta's own listener (a mail loop), and ``reply``
    is then vmta's verdict; otherwise ``reply`` is the remote reply, if there was one
    (a remote 5xx at this stage still defers: it says something about the path).

    ``remote_ip`` and ``remote_host`` name the last server an SMTP session was begun with
    (its address and the name it was reached by), None when no connection got that far;
    the attempt record of the deferral should carry them as a conversation's would."""

    def __init__(
        self,
        reason: str,
        *,
        permanent: bool = False,
        reply: ReplyLine | None = None,
        egress: bool = False,
        remote_ip: str | None = None,
        remote_host: str | None = None,
        stage: str = "connect",
        timed_out: bool = False,
    ):
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.reply = reply
        self.egress = egress  # failed before any SMTP: binding, connecting, proxy handshake
        self.remote_ip = remote_ip
        self.remote_host = remote_host
        # Where the last try ended, in MailerQ's vocabulary (bind, connect, intro, ehlo,
        # starttls, authplain, authlogin), and whether it was for want of an answer.
        self.stage = stage
        self.timed_out = timed_out


class ConversationBroken(TemporaryError):
    """The connection failed in the middle of a transaction (timeout, reset, garbage).
    ``stage``: the step it failed at (MailerQ's mailfrom, rcptto, data, message);
    ``timed_out``: for want of an answer, else the connection was lost."""

    def __init__(
        self, reason: str, *, stage: str = "mailfrom", timed_out: bool = False, messages: int = 0
    ) -> None:
        super().__init__(reason)
        self.stage = stage
        self.timed_out = timed_out
        self.messages = messages


class ConversationLost(ConversationBroken):
    """The connection was found unusable before the transaction reached the server (the
    RSET that opens it failed): the message was not attempted and may go on another
    connection at once."""


class Conversation(Protocol):
    remote_ip: str | None
    remote_host: str

    async def send(
        self, mail_from: str, recipients: Sequence[str], data: bytes
    ) -> TransactionReplies:
        """One transaction for ``data``, the message in wire form (dot-stuffed, CRLF:
        domain/message/wire_form.py) as the spool gives it."""
        ...

    async def reset(self) -> None: ...

    async def quit(self) -> None: ...


class Transport(Protocol):
    async def open(self, path: EgressPath) -> Conversation:
        """Connect, greet, EHLO, STARTTLS, AUTH. Raises ConnectFailed."""
        ...
