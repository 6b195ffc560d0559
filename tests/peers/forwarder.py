"""A TCP forwarder to put between vmta and a real service (RabbitMQ, PostgreSQL, Redis) on
127.0.0.1, to fail the service as a network would without stopping it:

- ``cut()``: every open connection is reset (RST: SO_LINGER 0, then close); new
  connections are forwarded as before (a broker restart, a failover).
- ``blackhole()``: nothing is forwarded and nothing is closed. Bytes from either side are
  read (the kernel acknowledges them, as a stateful middlebox that drops packets would
  not, but as a partition behind a proxy does) and dropped; new connections are accepted
  and get no answer (a silent partition).
- ``refuse()``: open connections are reset and new ones are reset at once (the service
  is down: the port answers RST).
- ``restore()``: forward again. Connections that lived through a black hole are reset
  (their streams lost bytes: they cannot be resumed), new ones are forwarded.

Runs on its own event loop in a thread, so that it serves a `vmta serve` subprocess and
synchronous tests alike; every method is safe from any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

FORWARD, BLACKHOLE, REFUSE = "forward", "blackhole", "refuse"


@dataclass(eq=False)
class _Pair:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    holed: bool = False  # lived through a black hole: its streams lost bytes
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def _reset(writer: asyncio.StreamWriter | None) -> None:
    """Close with RST rather than FIN."""
    if writer is None:
        return
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class TcpForwarder:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.mode = FORWARD
        self.accepted = 0
        self._pairs: set[_Pair] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self.port = 0

    # ---- life --------------------------------------------------------------------------

    def start(self) -> TcpForwarder:
        self._thread.start()
        self._call(self._start())
        return self

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> TcpForwarder:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    # ---- faults ------------------------------------------------------------------------

    def cut(self) -> None:
        self._call(self._set(FORWARD, reset_all=True))

    def blackhole(self) -> None:
        self._call(self._set(BLACKHOLE, reset_all=False))

    def refuse(self) -> None:
        self._call(self._set(REFUSE, reset_all=True))

    def restore(self) -> None:
        self._call(self._set(FORWARD, reset_all=False))

    @contextlib.contextmanager
    def blackholed(self) -> Iterator[None]:
        self.blackhole()
        try:
            yield
        finally:
            self.restore()

    @property
    def open_connections(self) -> int:
        return len(self._pairs)

    # ---- on the forwarder's loop -------------------------------------------------------

    def _call(self, coro: object) -> None:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]
        future.result(10)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for pair in list(self._pairs):
            self._drop(pair)

    async def _set(self, mode: str, *, reset_all: bool) -> None:
        self.mode = mode
        for pair in list(self._pairs):
            if reset_all or (mode == FORWARD and pair.holed):
                self._drop(pair)
            elif mode == BLACKHOLE:
                pair.holed = True

    def _drop(self, pair: _Pair) -> None:
        self._pairs.discard(pair)
        for task in pair.tasks:
            task.cancel()
        _reset(pair.client)
        _reset(pair.upstream)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.mode == REFUSE:
            _reset(writer)
            return
        pair = _Pair(writer, holed=self.mode == BLACKHOLE)
        self._pairs.add(pair)
        if pair.holed:
            # Accepted, never answered: read and drop until restored (then reset).
            pair.tasks.append(asyncio.ensure_future(self._swallow(pair, reader)))
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            self._drop(pair)
            return
        pair.upstream = up_writer
        pair.tasks += [
            asyncio.ensure_future(self._pump(pair, reader, up_writer)),
            asyncio.ensure_future(self._pump(pair, up_reader, writer)),
        ]

    async def _swallow(self, pair: _Pair, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while await reader.read(65536):
                pass
        self._drop(pair)

    async def _pump(
        self, pair: _Pair, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while data := await reader.read(65536):
                if pair.holed:
                    continue  # black-holed: acknowledged by this kernel, never passed on
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        if pair in self._pairs:
            self._drop(pair)
