"""What the delivery engine needs from an SMTP conversation, as a small interface.

``vmta.smtp.transport`` implements it with real connections (egress connectors and the
SMTP client); the engine knows nothing of sockets, proxies or TLS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from vmta.delivery.path import EgressPath
from vmta.domain.delivery_outcome import ReplyLine
from vmta.domain.errors import TemporaryError


@dataclass(frozen=True)
class TransactionReplies:
    mail: ReplyLine
    rcpts: Sequence[ReplyLine]
    data: ReplyLine | None  # None when DATA was not sent (every RCPT refused)


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
    ):
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.reply = reply
        self.egress = egress  # failed before any SMTP: binding, connecting, proxy handshake
        self.remote_ip = remote_ip
        self.remote_host = remote_host


class ConversationBroken(TemporaryError):
    """The connection failed in the middle of a transaction (timeout, reset, garbage)."""


class ConversationLost(ConversationBroken):
    """The connection was found unusable before the transaction reached the server (the
    RSET that opens it failed): the message was not attempted and may go on another
    connection at once."""


class Conversation(Protocol):
    remote_ip: str | None
    remote_host: str

    async def send(
        self, mail_from: str, recipients: Sequence[str], data: bytes
    ) -> TransactionReplies: ...

    async def reset(self) -> None: ...

    async def quit(self) -> None: ...


class Transport(Protocol):
    async def open(self, path: EgressPath) -> Conversation:
        """Connect, greet, EHLO, STARTTLS, AUTH. Raises ConnectFailed."""
        ...
