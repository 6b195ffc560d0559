"""One mail transaction of the SMTP client: the message on the wire and the replies.

RFC 5321 §3.3: MAIL, one RCPT per recipient, DATA, the message, and the end-of-data reply.
"""

from __future__ import annotations

from dataclasses import dataclass

from vmta.domain.attempts.smtp_reply import SmtpReply
from vmta.domain.errors import PermanentError
from vmta.smtp.mail_path import has_control_character


class InvalidEnvelope(PermanentError):
    """An address cannot be written into an SMTP command (a control character) or is missing."""


def check_address(address: str, role: str, *, allow_empty: bool) -> None:
    if not address and not allow_empty:
        raise InvalidEnvelope(f"the {role} address is empty")
    if has_control_character(address) or "<" in address or ">" in address:
        # RFC 5321 §4.1.2: no control character in a path, and the brackets delimit it.
        raise InvalidEnvelope(
            f"the {role} address {address!r} contains a control character, < or >"
        )


@dataclass(frozen=True)
class TransactionResult:
    """What the server answered to one transaction.

    ``recipients`` has one reply per recipient, in order. When MAIL was refused no RCPT
    reply means anything (a pipelining server answers them "503 need MAIL"), so each
    entry is the MAIL reply. ``data`` is the reply that ended the DATA phase (the end of
    data, or DATA itself when it was not 354); None when no recipient was accepted.
    """

    mail: SmtpReply
    recipients: tuple[SmtpReply, ...]
    data: SmtpReply | None
    # ``data`` is the reply to the final dot (RFC 5321 §4.1.1.4), not DATA's own.
    after_dot: bool = False

    def outcomes(self) -> tuple[SmtpReply, ...]:
        """For each recipient, the reply that decided its fate."""
        return tuple(
            reply if not reply.is_success or self.data is None else self.data
            for reply in self.recipients
        )

    @property
    def delivered(self) -> bool:
        """True when the server took responsibility for at least one recipient."""
        return self.data is not None and self.data.is_success
