"""Hostile SMTP input on the injection listener gets a clean RFC 5321 / RFC 3463 reply and
stores nothing, on SQLite and PostgreSQL. The client is a raw socket (tests/peers/raw_smtp.py)
so that exactly the hostile bytes reach vmta."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.delivery.conftest import RunningPlane
from tests.peers.raw_smtp import RawSmtp
from vmta.domain.message.wire_form import unstuffed
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


# -- the DATA state (smtp/chunked_data.py): replies and stored bytes over a real socket ---


def data_session(plane: RunningPlane) -> RawSmtp:
    client = session(plane)
    assert client.command("MAIL FROM:<s@src.test>").code == 250
    assert client.command("RCPT TO:<r@dest.test>").code == 250
    assert client.command("DATA").code == 354
    return client


def stored_bodies(plane: RunningPlane) -> list[bytes]:
    """The stored messages, without the stuffed dots of wire form (domain/message/wire_form.py)."""
    with plane.store.read() as conn:
        return [unstuffed(bytes(row[0])) for row in conn.execute(select(messages.c.body))]


async def test_commands_pipelined_after_the_final_dot_are_answered_in_order(
    plane: RunningPlane,
) -> None:
    body = b"Subject: piped\r\n\r\n..dotted\r\n" + b"x" * 70 + b"\r\n"

    def run() -> list[int]:
        with data_session(plane) as client:
            # The end of data, a whole second transaction and QUIT in one write (RFC 2920).
            client.send(body + b".\r\nMAIL FROM:<s@src.test>\r\nRCPT TO:<r2@dest.test>\r\nDATA\r\n")
            codes = [client.read().code for _ in range(4)]
            client.send(b"second\r\n.\r\nQUIT\r\n")
            return [*codes, client.read().code, client.read().code]

    assert await asyncio.to_thread(run) == [250, 250, 250, 354, 250, 221]
    bodies = stored_bodies(plane)
    assert any(b.endswith(b"\r\n\r\n.dotted\r\n" + b"x" * 70 + b"\r\n") for b in bodies)
    assert len(bodies) == 2 and any(b.endswith(b"\r\nsecond\r\n") for b in bodies)


@pytest.mark.parametrize(
    ("line", "code"), [(b"y" * 999, 250), (b"y" * 1000, 500)]
)  # 1,001 bytes with the CRLF are allowed, 1,002 are not (RFC 5321 §4.5.3.1.6)
async def test_a_line_over_the_limit_fails_the_transaction_after_the_data(
    plane: RunningPlane, line: bytes, code: int
) -> None:
    def run() -> tuple[int, int]:
        with data_session(plane) as client:
            # Sent in small pieces so that the line is cut between reads.
            wire = b"Subject: long\r\n\r\n" + line + b"\r\nend\r\n.\r\n"
            for at in range(0, len(wire), 97):
                client.send(wire[at : at + 97])
            reply = client.read().code
            return reply, client.command("NOOP").code

    assert await asyncio.to_thread(run) == (code, 250)  # the session goes on
    assert stored_messages(plane) == (1 if code == 250 else 0)


async def test_too_much_data_is_refused_and_the_session_goes_on(plane_factory: Any) -> None:
    running: RunningPlane = await plane_factory(max_message_size=4096)

    def run() -> tuple[int, int]:
        with data_session(running) as client:
            client.send(
                b"Subject: big\r\n\r\n" + b"z" * 70 + b"\r\n" * 1 + (b"w" * 78 + b"\r\n") * 200
            )
            client.send(b".\r\n")
            return client.read().code, client.command("RSET").code

    assert await asyncio.to_thread(run) == (552, 250)
    assert stored_messages(running) == 0
