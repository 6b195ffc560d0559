"""Hostile SMTP input on the injection listener gets a clean RFC 5321 / RFC 3463 reply and
stores nothing, on SQLite and PostgreSQL. The client is a raw socket (tests/peers/raw_smtp.py)
so that exactly the hostile bytes reach vmta."""

from __future__ import annotations

import asyncio
import base64

import pytest
from sqlalchemy import func, select

from tests.delivery.conftest import RunningPlane
from tests.peers.raw_smtp import RawSmtp
from vmta.store.tables import messages


def stored_messages(plane: RunningPlane) -> int:
    with plane.store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(messages)).scalar_one())


def session(plane: RunningPlane) -> RawSmtp:
    client = RawSmtp(plane.smtp_port)
    assert client.read().code == 220
    assert client.command("EHLO client.test").code == 250
    return client


@pytest.mark.parametrize(
    "path", [b"<a\0b@src.test>", b"<a\rb@src.test>", b"<ab@src\x1b.test>", b"<a\x7fb@src.test>"]
)
async def test_control_character_in_mail_from_is_refused(plane: RunningPlane, path: bytes) -> None:
    def run() -> None:
        with session(plane) as client:
            reply = client.command(b"MAIL FROM:" + path)
            assert (reply.code, reply.text.split()[0]) == (501, "5.1.7"), reply
            # The session goes on: a good transaction still works afterwards.
            assert client.command("MAIL FROM:<ok@src.test>").code == 250

    await asyncio.to_thread(run)
    assert stored_messages(plane) == 0


@pytest.mark.parametrize("path", [b"<r\0@dest.test>", b"<r\r@dest.test>", b"<r@dest\t.test>"])
async def test_control_character_in_rcpt_to_is_refused(plane: RunningPlane, path: bytes) -> None:
    def run() -> None:
        with session(plane) as client:
            assert client.command("MAIL FROM:<ok@src.test>").code == 250
            reply = client.command(b"RCPT TO:" + path)
            assert (reply.code, reply.text.split()[0]) == (501, "5.1.3"), reply
            # No recipient was taken, so there is nothing to send.
            assert client.command("DATA").code == 503

    await asyncio.to_thread(run)
    assert stored_messages(plane) == 0


@pytest.mark.parametrize("length", [4000, 200_000])  # the latter arrives in several reads
async def test_overlong_auth_login_reply_gets_a_clean_answer(
    plane: RunningPlane, length: int
) -> None:
    def run() -> list[int]:
        codes: list[int] = []
        with session(plane) as client:
            for _ in range(3):
                assert client.command("AUTH LOGIN").code == 334
                reply = client.command(b"A" * length)
                codes.append(reply.code)
                assert "Internal error" not in reply.text, reply
                if reply.code == 334:  # the name was taken; now the password
                    codes[-1] = client.command(b"B" * length).code
            # The session is still usable.
            assert client.command("NOOP").code == 250
        return codes

    codes = await asyncio.to_thread(run)
    # RFC 4954 §6: 500 5.5.6 for an exchange line too long; 535 when it fit but was wrong.
    assert all(code in (500, 535) for code in codes), codes
    assert stored_messages(plane) == 0


def b64(text: str) -> bytes:
    return base64.b64encode(text.encode())
