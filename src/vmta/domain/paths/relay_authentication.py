"""A relay server that wants authentication from a client that presented none.

A relay server vmta was given no credentials for may still demand them: RFC 4954 §6
names ``530 5.7.0 Authentication required`` for a command refused until the client
authenticates, and servers say the same with other 5.7.x codes ("5.7.1 Client was not
authenticated", Exchange's "5.7.57"). That is not a verdict on the message or on its
recipient but on vmta's configuration of the path, which an operator can fix before the
message expires: the recipient is deferred, with a reply that says what to fix, instead
of failing on a 5xx.
"""

from __future__ import annotations

import re

from vmta.domain.attempts.delivery_outcome import ReplyLine

AUTH_REQUIRED = 530  # RFC 4954 §6
_ENHANCED = re.compile(r"5\.7\.\d{1,3}\b")
_MENTIONS_AUTH = re.compile(r"auth", re.IGNORECASE)


def requires_authentication(reply: ReplyLine) -> bool:
    """True for a 530, or a 5xx whose enhanced code is 5.7.x and whose text speaks of
    authentication (5.7.x alone also covers policy refusals that credentials won't fix)."""
    if reply.code == AUTH_REQUIRED:
        return True
    if not 500 <= reply.code < 600:
        return False
    return bool(_ENHANCED.match(reply.text)) and bool(_MENTIONS_AUTH.search(reply.text))


def unauthenticated_deferral(reply: ReplyLine, relay_name: str, command: str) -> ReplyLine:
    """The deferral standing for ``reply``: a 4xx naming the relay server and the fix,
    with the server's own reply quoted."""
    return ReplyLine(
        451,
        f"4.7.0 relay server {relay_name!r} requires authentication, and none is configured"
        f" for it (set its username and password); it answered {command} with {reply}",
        stage=reply.stage,  # where the attempt ended, for MailerQ's results
        ended=reply.ended,
    )


def defer_unauthenticated(
    relay_name: str, mail: ReplyLine, rcpts: list[ReplyLine]
) -> tuple[ReplyLine, list[ReplyLine]]:
    """MAIL's and each RCPT's reply, those that ask for authentication made deferrals."""
    if requires_authentication(mail):
        deferral = unauthenticated_deferral(mail, relay_name, "MAIL")
        return deferral, [deferral] * len(rcpts)  # no RCPT was answered
    rcpts = [
        unauthenticated_deferral(r, relay_name, "RCPT") if requires_authentication(r) else r
        for r in rcpts
    ]
    return mail, rcpts
