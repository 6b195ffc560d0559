"""The client side of SMTP AUTH (RFC 4954) with the PLAIN and LOGIN mechanisms.

Nothing here logs or returns what it sends: the caller sees only the server's replies.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal

from vmta.domain.attempts.smtp_reply import SmtpReply

Mechanism = Literal["PLAIN", "LOGIN"]
Command = Callable[[str], Awaitable[SmtpReply]]

AUTHENTICATED = 235  # RFC 4954 §4 and §6: the only success reply to AUTH
CONTINUE = 334  # RFC 4954 §4: a server challenge


def choose_mechanism(offered: Sequence[str]) -> Mechanism | None:
    """PLAIN when offered (one round trip), else LOGIN, else nothing we speak."""
    names = {name.upper() for name in offered}
    if "PLAIN" in names:
        return "PLAIN"
    if "LOGIN" in names:
        return "LOGIN"
    return None


async def run_exchange(
    mechanism: Mechanism, username: str, password: str, command: Command
) -> SmtpReply:
    """Authenticate; returns the server's final reply (235 on success)."""
    if mechanism == "PLAIN":
        # RFC 4616 §2: [authzid] NUL authcid NUL passwd, sent as the initial response
        # (RFC 4954 §4) to save a round trip.
        token = _b64("\0" + username + "\0" + password)
        reply = await command(f"AUTH PLAIN {token}")
    else:
        # LOGIN (draft-murchison-sasl-login): the server asks for the user name, then
        # for the password, each answered in base64.
        reply = await command("AUTH LOGIN")
        for secret in (username, password):
            if reply.code != CONTINUE:
                break
            reply = await command(_b64(secret))
    if reply.code == CONTINUE:
        # A challenge we have nothing more to answer to: RFC 4954 §4 cancels with "*".
        reply = await command("*")
    return reply


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")
