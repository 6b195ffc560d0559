"""A relay server vmta has no credentials for answers MAIL with ``530 5.7.0
Authentication required`` (RFC 4954 §6): the recipient is deferred, not failed, and the
attempt's reply says that the relay server wants credentials vmta was not given. The
server is a real socket that scripts its replies; the reply rule itself is checked on its
own below."""

from __future__ import annotations

from typing import Any

import pytest

from tests.delivery.conftest import RunningPlane, eventually, message
from tests.peers.scripted import smtp_script
from vmta.domain.attempts.delivery_outcome import ReplyLine
from vmta.domain.paths.relay_authentication import requires_authentication

NO_AUTH_GIVEN = {
    "EHLO": "250-wants-auth.test\r\n250 AUTH PLAIN LOGIN",
    "MAIL": "530 5.7.0 Authentication required",
    "RSET": "250 2.0.0 Ok",
}


async def test_530_at_mail_defers_and_says_credentials_are_missing(
    plane: RunningPlane, raw_server: Any
) -> None:
    server = await raw_server(smtp_script("220 wants-auth.test", NO_AUTH_GIVEN, default="221 Bye"))
    plane.add_relay("relay-1", server.port)  # no username, no password
    queue_id = await plane.asend(message("relay-1"))
    view = await eventually(lambda: (m := plane.message(queue_id)) and m.attempts and m)
    attempt = view.attempts[0]
    assert attempt["outcome"] == "deferred"
    reply = attempt["reply"]
    assert reply.startswith("451 4.7.0 relay server 'relay-1' requires authentication")
    assert "none is configured for it" in reply
    assert reply.endswith("answered MAIL with 530 5.7.0 Authentication required")
    # Still queued for a later attempt, not failed.
    recipient = view.recipients[0]
    assert recipient["state"] == "queued", recipient
    received = bytes(server.received[0])
    assert b"MAIL FROM:<sender@src.test>" in received and b"AUTH" not in received


@pytest.mark.parametrize(
    ("code", "text", "wanted"),
    [
        (530, "5.7.0 Authentication required", True),
        (530, "Authentication required", True),  # no enhanced code
        (550, "5.7.1 Client was not authenticated", True),
        (550, "5.7.57 Client was not authenticated to send anonymous mail", True),
        (550, "5.7.1 Relay access denied", False),  # policy: credentials may not help
        (550, "5.1.1 User unknown (authoritative)", False),
        (451, "4.7.0 Authentication temporarily unavailable", False),  # already defers
    ],
)
def test_which_replies_ask_for_authentication(code: int, text: str, wanted: bool) -> None:
    assert requires_authentication(ReplyLine(code, text)) is wanted
