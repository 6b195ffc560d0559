"""A message as an edge (SMTP, HTTP submission, MailerQ inject) hands it to the intake:
envelope, bytes, and what the edge knows of the client."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Arrival:
    mail_from: str
    recipients: Sequence[str]
    data: bytes
    client_ip: str | None
    helo: str | None
    auth_name: str | None
    tls: bool
    # May this client relay (loopback, authenticated, an allowed network, an API
    # credential)? Only its mail is DKIM-signed, and only its X-GreenArrow-DKIM honoured:
    # signing vouches for a message, so mail from anyone else (inbound mail forwarded, say)
    # is never signed with the operator's keys, and its X-GreenArrow-DKIM is removed and
    # ignored. False unless the edge that took the message says otherwise.
    may_relay: bool = False
    # ``data`` is in wire form already (SMTP DATA as the client sent it, smtp/chunked_data.py);
    # otherwise it is the message as given, and the intake puts it in wire form, the form
    # the spool keeps (domain/message/wire_form.py).
    wire_form: bool = False


class IntakePort(Protocol):
    """What an SMTP listener needs of the intake (``vmta.delivery.ingress.intake.Intake``):
    whether a new transaction may start, and the durable accept of a message."""

    def refusal(self) -> str | None: ...

    async def accept(self, arrival: Arrival, *, via: str = "") -> str: ...
