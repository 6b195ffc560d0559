"""A raw TCP server on the test's own event loop for peers that misbehave on purpose:
a proxy that answers garbage, an SMTP server that greets with 554, drops the connection
in the middle of a transaction or never answers.

``smtp_script(...)`` builds a line-based SMTP responder from a table of replies; any other
behaviour is a handler coroutine written in the test. Everything received is recorded in
``server.received`` (raw bytes per connection).

Fixture (registered as a plugin in tests/conftest.py): ``raw_server``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Protocol

import pytest


class Reader(Protocol):
    """The reading side a handler gets: an asyncio.StreamReader that records."""

    async def readline(self) -> bytes: ...
    async def readexactly(self, n: int) -> bytes: ...
    async def read(self, n: int = -1) -> bytes: ...


Handler = Callable[[Reader, asyncio.StreamWriter], Awaitable[None]]

CLOSE = "<close>"  # as a reply: close the connection instead of answering
SILENT = "<silent>"  # as a reply: never answer (the client's timeout must fire)


class RawServer:
    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.host = "127.0.0.1"
        self.port = 0
        self.received: list[bytearray] = []  # everything read, one buffer per connection
        self.peers: list[str] = []

    async def start(self, host: str = "127.0.0.1") -> RawServer:
        self.host = host
        self._server = await asyncio.start_server(self._serve, host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.peers.append(writer.get_extra_info("peername")[0])
        record = bytearray()
        self.received.append(record)
        try:
            await self._handler(_RecordingReader(reader, record), writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            writer.close()  # after what the handler wrote has gone out


class _RecordingReader:
    """Reads from ``inner`` and appends every byte to ``record``."""

    def __init__(self, inner: asyncio.StreamReader, record: bytearray) -> None:
        self._inner = inner
        self._record = record

    async def readline(self) -> bytes:
        data = await self._inner.readline()
        self._record += data
        return data

    async def readexactly(self, n: int) -> bytes:
        data = await self._inner.readexactly(n)
        self._record += data
        return data

    async def read(self, n: int = -1) -> bytes:
        data = await self._inner.read(n)
        self._record += data
        return data


def smtp_script(
    greeting: str | None,
    replies: Mapping[str, str | Sequence[str]],
    *,
    default: str = "250 OK",
) -> Handler:
    """An SMTP responder: ``replies`` maps a verb (EHLO, MAIL, RCPT, DATA, ".", QUIT...)
    to a reply, or to a list used one per command. A reply may hold several lines
    separated by CRLF, or be CLOSE or SILENT. After a 354 to DATA it reads the message
    up to the lone dot and answers with the "." entry."""

    async def handler(reader: Reader, writer: asyncio.StreamWriter) -> None:
        queues = {
            verb: deque([reply] if isinstance(reply, str) else reply)
            for verb, reply in replies.items()
        }

        def next_reply(verb: str) -> str:
            queue = queues.get(verb)
            if not queue:
                return default
            return queue.popleft() if len(queue) > 1 else queue[0]

        async def say(reply: str) -> bool:
            if reply == CLOSE:
                writer.transport.abort()
                return False
            if reply == SILENT:
                await asyncio.Event().wait()
            writer.write(reply.encode() + b"\r\n")
            await writer.drain()
            return True

        if greeting is not None and not await say(greeting):
            return
        while line := await reader.readline():
            verb = line.split(b" ", 1)[0].strip().upper().decode(errors="replace")
            reply = next_reply(verb)
            if not await say(reply):
                return
            if verb == "QUIT":
                return
            if verb == "DATA" and reply.startswith("354"):
                while await reader.readline() not in (b".\r\n", b""):
                    pass
                if not await say(next_reply(".")):
                    return

    return handler


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[Handler], Awaitable[RawServer]]]:
    """``await raw_server(handler, host="127.0.0.1")``: a RawServer, closed after the test."""
    servers: list[RawServer] = []

    async def make(handler: Handler, host: str = "127.0.0.1") -> RawServer:
        server = await RawServer(handler).start(host)
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.close()
