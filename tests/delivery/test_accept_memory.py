"""While the spool commits a message that came by SMTP, the session holds it once: as the
intake stores it, with its Received field. The message as the client sent it (the DATA
collector's buffer, the envelope's content, the ``Arrival``) is let go before the commit,
or every session waiting for the spool would hold each message twice (docs/PERFORMANCE.md
round 7). Checked on the real listener: the spool gateway's accept looks at every frame
that awaits it, from the intake down to aiosmtpd's DATA command."""

from __future__ import annotations

import asyncio
import smtplib
import sys
from typing import Any

import pytest
from aiosmtpd.smtp import Envelope

from tests.delivery.conftest import RunningPlane
from vmta.domain.attempts.spool_records import NewMessage
from vmta.domain.message.arrival import Arrival

pytestmark = pytest.mark.one_database  # what the process holds, not what the database does

BODY_SIZE = 20_000


class WatchingGateway:
    """The spool gateway, which notes, at each accept, what the awaiting frames still hold
    of the message besides the copy being stored."""

    def __init__(self, gateway: Any) -> None:
        self.gateway = gateway
        self.frames: list[str] = []
        self.held: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.gateway, name)

    async def accept(self, message: NewMessage, now: float, *, claim: bool) -> Any:
        frame = sys._getframe(1)
        while frame is not None:
            where = frame.f_code.co_name
            self.frames.append(where)
            for name, value in frame.f_locals.items():
                if kept_copy(value, message.body):
                    self.held.append(f"{where}: {name}")
            frame = frame.f_back
        return await self.gateway.accept(message, now, claim=claim)


def kept_copy(value: object, stored: bytes) -> bool:
    """Whether ``value`` is, or holds, a copy of the message other than ``stored``."""
    if isinstance(value, bytes | bytearray | memoryview):
        return value is not stored and len(value) >= BODY_SIZE
    if isinstance(value, Arrival):
        return True
    envelope = getattr(value, "envelope", value)  # aiosmtpd's SMTP session holds one
    if isinstance(envelope, Envelope):
        return bool(envelope.content or envelope.original_content)
    return False


async def test_the_message_as_it_came_is_let_go_before_the_commit(plane: RunningPlane) -> None:
    watch = WatchingGateway(plane.plane.intake.gateway)
    plane.plane.intake.gateway = watch  # type: ignore[assignment]
    body = "".join(f"line {n:05d} " + "x" * 60 + "\r\n" for n in range(BODY_SIZE // 70 + 1))
    message = f"From: a@b.test\r\nTo: c@d.test\r\nSubject: once\r\n\r\n{body}"

    def send() -> None:
        with smtplib.SMTP("127.0.0.1", plane.smtp_port, timeout=30) as client:
            client.sendmail("a@b.test", ["c@d.test"], message)

    await asyncio.to_thread(send)
    # The walk saw the whole way in, so an empty list means something.
    for part in ("accept", "handle_DATA", "_call_handler_hook", "smtp_DATA"):
        assert part in watch.frames, watch.frames
    assert watch.held == []
