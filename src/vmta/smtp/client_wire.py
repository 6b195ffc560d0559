"""The wire under an SMTP client session: commands out, replies in (RFC 5321 §4.2), each
bounded in time, and the rules for a connection that breaks or is closed. ``SmtpSession``
(smtp/client.py) builds the protocol on it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from vmta.domain.attempts.smtp_reply import MalformedReply, ReplyAssembler, SmtpReply
from vmta.smtp.client_errors import SessionDeferred, SessionFailed, Stage
from vmta.smtp.client_options import SessionOptions

QUIT_TIMEOUT = 5.0  # QUIT is a courtesy: never wait long for its answer
CLOSING = 421  # RFC 5321 §3.8: the server is closing the transmission channel


class SmtpWire:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        server_name: str,
        options: SessionOptions,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._options = options
        self._assembler = ReplyAssembler()
        self._usable = True
        self._closed = False
        self.server_name = server_name

    @property
    def can_send(self) -> bool:
        """False once the connection broke or the server announced it is closing."""
        return self._usable and not self._closed

    async def quit(self) -> None:
        """QUIT and close; bounded in time and silent about a peer that already left."""
        if self._closed:
            return
        try:
            if self._usable:
                self._writer.write(b"QUIT\r\n")
                await self._read_reply("reset", min(self._options.command_timeout, QUIT_TIMEOUT))
        except SessionFailed:
            pass
        self._closed = True
        self._writer.close()
        try:
            async with asyncio.timeout(QUIT_TIMEOUT):
                await self._writer.wait_closed()
        except (OSError, TimeoutError):
            self._writer.transport.abort()

    def close(self) -> None:
        """Drop the connection at once, without QUIT."""
        self._closed = True
        self._writer.transport.abort()

    def _require_usable(self, stage: Stage) -> None:
        if not self.can_send:
            raise SessionDeferred(stage, f"the session with {self.server_name} is closed")

    async def _command(self, line: str, stage: Stage) -> SmtpReply:
        self._writer.write(line.encode("utf-8") + b"\r\n")
        await self._drain(self._options.command_timeout)
        return await self._read_reply(stage, self._options.command_timeout)

    async def _drain(self, seconds: float) -> None:
        transport = self._writer.transport
        waiting: contextlib.AbstractAsyncContextManager[object]
        if transport.get_write_buffer_size() <= transport.get_write_buffer_limits()[0]:
            # Below the low-water mark the writer is not paused: drain() returns at once
            # (or raises for a lost connection), so no timer is armed for it.
            waiting = contextlib.nullcontext()
        else:
            waiting = asyncio.timeout(seconds)
        try:
            async with waiting:
                await self._writer.drain()
        except (OSError, TimeoutError) as exc:
            self._broken()
            timed_out = isinstance(exc, TimeoutError)
            what = "timed out" if timed_out else _os_reason(exc)
            raise SessionDeferred(
                "transaction", f"sending to {self.server_name} failed: {what}", timed_out=timed_out
            ) from None

    async def _read_replies(self, count: int, stage: Stage, seconds: float) -> list[SmtpReply]:
        """``count`` pipelined replies; a 421 stands in for all that would follow it."""
        replies: list[SmtpReply] = []
        while len(replies) < count:
            reply = await self._read_reply(stage, seconds)
            replies.append(reply)
            if reply.code == CLOSING:
                replies += [reply] * (count - len(replies))
        return replies

    async def _read_reply(self, stage: Stage, seconds: float) -> SmtpReply:
        try:
            # Pipelined replies mostly come in one segment: those already received are
            # read without arming a timer, which only waiting needs.
            reply = await self._buffered_reply()
            if reply is None:
                async with asyncio.timeout(seconds):
                    while reply is None:
                        reply = await self._next_line()
        except TimeoutError:
            reason = f"{self.server_name} did not answer within {seconds:g} s"
            self._broken()
            raise SessionDeferred(stage, reason, timed_out=True) from None
        except asyncio.IncompleteReadError:
            reason = f"{self.server_name} closed the connection"
        except asyncio.LimitOverrunError:
            reason = f"{self.server_name} sent a reply line longer than the stream limit"
        except MalformedReply as exc:
            reason = f"{self.server_name} sent a malformed reply: {exc}"
        except OSError as exc:
            reason = f"connection to {self.server_name} failed: {_os_reason(exc)}"
        else:
            if reply.code == CLOSING:
                self._usable = False
            return reply
        self._broken()
        raise SessionDeferred(stage, reason)

    async def _buffered_reply(self) -> SmtpReply | None:
        """The next reply if its lines are all received; else None, with the lines that
        are kept by the assembler (the caller waits for the rest)."""
        while has_buffered_line(self._reader):
            reply = await self._next_line()  # a line is buffered: returns without waiting
            if reply is not None:
                return reply
        return None

    async def _next_line(self) -> SmtpReply | None:
        line = await self._reader.readuntil(b"\n")
        return self._assembler.feed(line.rstrip(b"\r\n").decode("utf-8", errors="replace"))

    def _broken(self) -> None:
        self._usable = False
        self._closed = True
        self._writer.transport.abort()


def has_buffered_line(reader: asyncio.StreamReader) -> bool:
    # StreamReader has no public way to ask what is waiting; its buffer is.
    return b"\n" in getattr(reader, "_buffer", b"")


def has_buffered_input(reader: asyncio.StreamReader) -> bool:
    # StreamReader has no public way to ask whether bytes are waiting; its buffer is.
    return bool(getattr(reader, "_buffer", b""))


def command_lines(commands: Sequence[str]) -> bytes:
    return "".join(f"{command}\r\n" for command in commands).encode("utf-8")


def _os_reason(exc: OSError) -> str:
    return (exc.strerror or str(exc) or type(exc).__name__).lower()
