"""What the injection listener offers and accepts for SMTP AUTH, over a real socket: EHLO
names exactly the mechanisms vmta implements (aiosmtpd would advertise any ``auth_*``
attribute as one), an unknown mechanism gets 504, AUTH inside a mail transaction gets
503 (RFC 4954 §4), and AUTH PLAIN with an authorization identity other than the user is
refused (RFC 4616 §2)."""

from __future__ import annotations

import asyncio
import base64
import smtplib

import pytest

from tests.delivery.conftest import SUBMIT_LOGIN, RunningPlane

pytestmark = pytest.mark.one_database  # SMTP dialogue only; the store is not in question


def plain(authzid: str, name: str, secret: str) -> str:
    return base64.b64encode(f"{authzid}\0{name}\0{secret}".encode()).decode()


def ehlo_auth_line(port: int) -> str:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        code, text = client.ehlo("client.example")
        assert code == 250
        lines = text.decode().splitlines()
        return next(line for line in lines if line.upper().startswith("AUTH"))


def dialogue(port: int, *commands: str) -> list[tuple[int, str]]:
    """Each command sent after EHLO, with its reply."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example")
        replies = []
        for command in commands:
            code, text = client.docmd(command)
            replies.append((code, text.decode()))
        return replies


async def test_ehlo_advertises_exactly_plain_and_login(plane: RunningPlane) -> None:
    assert await asyncio.to_thread(ehlo_auth_line, plane.smtp_port) == "AUTH LOGIN PLAIN"


async def test_unknown_mechanism_is_504_and_the_session_goes_on(plane: RunningPlane) -> None:
    name, secret = SUBMIT_LOGIN
    replies = await asyncio.to_thread(
        dialogue,
        plane.smtp_port,
        "AUTH gate eA==",
        "AUTH sasl_gate",
        f"AUTH PLAIN {plain('', name, secret)}",
    )
    assert replies[0] == (504, "5.5.4 Unrecognized authentication type")
    assert replies[1][0] == 504
    assert replies[2][0] == 235  # the same connection still works


async def test_auth_inside_a_mail_transaction_is_503(plane: RunningPlane) -> None:
    name, secret = SUBMIT_LOGIN
    replies = await asyncio.to_thread(
        dialogue,
        plane.smtp_port,
        "MAIL FROM:<sender@example.com>",
        f"AUTH PLAIN {plain('', name, secret)}",
        "RSET",
        f"AUTH PLAIN {plain('', name, secret)}",
    )
    assert replies[0][0] == 250
    assert replies[1] == (503, "5.5.1 AUTH not permitted during a mail transaction")
    assert replies[2][0] == 250
    assert replies[3][0] == 235  # after RSET the transaction is over


async def test_plain_with_another_authorization_identity_is_refused(
    plane: RunningPlane,
) -> None:
    name, secret = SUBMIT_LOGIN
    other = await asyncio.to_thread(
        dialogue, plane.smtp_port, f"AUTH PLAIN {plain('admin', name, secret)}"
    )
    code, text = other[0]
    assert code == 535 and text.startswith("5.7.8 Authorization identity")
    # Not authenticated: the session can still authenticate properly.
    same = await asyncio.to_thread(
        dialogue, plane.smtp_port, f"AUTH PLAIN {plain(name, name, secret)}"
    )
    assert same == [(235, "2.7.0 Authentication successful")]
