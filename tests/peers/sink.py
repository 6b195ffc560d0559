"""A recording SMTP server (aiosmtpd) for tests: it answers like a real MTA and writes
down what it saw, so that tests assert on the peer's observations.

It runs in its own thread with its own event loop, so tests on any loop (or none) can talk
to it over real sockets. Per connection it records the peer IP, HELO/EHLO name, whether
STARTTLS was used, the AUTH identity and mechanism (a real check of a configured user name
and password), the commands in order, and each transaction (MAIL FROM and its options,
RCPTs, message bytes, the reply given). It also records the most connections it had open
at once. Replies can be scripted (``sink.script("MAIL", "451 4.3.0 later")`` answers the
next MAIL with 451, the one after normally; ``sink.refuse("x@y.test", "550 ...")`` refuses
a recipient every time), and ``DROP`` as a scripted reply cuts the connection instead.
``stop()`` and ``start()`` again reuse the same port. ``clock`` stamps what it sees (the
end of each transaction, each connection's opening and closing): ``time.time`` unless a
test gives the engine's manual clock, so that "messages per window" is in the engine's time.
``data_delay`` (seconds, may be changed while running) holds each answer to DATA back, so
that a sender with more than one message has to open more connections to go faster;
``data_gate`` (a threading.Event) holds them until the test sets it.

Fixtures (registered as a plugin in tests/conftest.py): ``tls_files`` (a self-signed
certificate made with ``openssl req`` at test time), ``sink_factory`` and ``sink``.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.conftest import skip_or_fail

DROP = "DROP"  # a scripted "reply" that closes the connection instead of answering


@dataclass
class SeenTransaction:
    mail_from: str
    mail_options: list[str]
    rcpt_tos: list[str]
    data: bytes
    reply: str  # what the sink answered at the end of data
    at: float = field(default_factory=time.time)  # when the data ended (this host's clock)
    begun_at: float = 0.0  # when its MAIL command came (the sink's clock)

    @property
    def accepted(self) -> bool:
        return self.reply.startswith("2")


@dataclass
class SeenConnection:
    peer_ip: str
    opened_at: float = 0.0  # by the sink's clock
    closed_at: float | None = None
    ehlo_names: list[str] = field(default_factory=list)  # every HELO/EHLO argument, in order
    tls: bool = False
    auth_identity: str | None = None
    auth_mechanism: str | None = None
    commands: list[str] = field(default_factory=list)  # verbs in arrival order
    pipelined: list[str] = field(default_factory=list)  # verbs that came with more queued
    transactions: list[SeenTransaction] = field(default_factory=list)
    mail_at: float = 0.0  # when the last MAIL command came

    @property
    def ehlo_name(self) -> str | None:
        return self.ehlo_names[-1] if self.ehlo_names else None


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


class RecordingSink:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        hostname: str = "sink.test",
        tls: TlsFiles | None = None,
        credentials: tuple[str, str] | None = None,
        auth_mechanisms: tuple[str, ...] = ("PLAIN", "LOGIN"),
        auth_require_tls: bool = False,
        pipelining: bool = True,
        idle_timeout: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.host = host
        self.clock = clock
        self.data_delay = 0.0
        # While set to an unset Event, every answer to DATA waits for it (at most 60 s).
        self.data_gate: threading.Event | None = None
        self.idle_timeout = idle_timeout  # seconds between commands before it hangs up
        self.port = port
        self.hostname = hostname
        self.tls = tls
        self.credentials = credentials
        self.auth_mechanisms = auth_mechanisms
        self.auth_require_tls = auth_require_tls
        self.pipelining = pipelining
        self._lock = threading.Lock()
        self._connections: list[SeenConnection] = []
        self._open = 0
        self._max_open = 0
        self._scripts: dict[str, deque[str]] = defaultdict(deque)
        self._refusals: dict[str, str] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._protocols: set[_RecordingSMTP] = set()

    # -- what tests read ----------------------------------------------------------------

    @property
    def connections(self) -> list[SeenConnection]:
        with self._lock:
            return list(self._connections)

    @property
    def transactions(self) -> list[SeenTransaction]:
        return [t for c in self.connections for t in c.transactions]

    @property
    def messages(self) -> list[SeenTransaction]:
        """Transactions the sink accepted (2xx at the end of data)."""
        return [t for t in self.transactions if t.accepted]

    @property
    def max_concurrent(self) -> int:
        with self._lock:
            return self._max_open

    @property
    def open_now(self) -> int:
        """Connections open at this moment."""
        with self._lock:
            return self._open

    # -- what tests tell it -------------------------------------------------------------

    def script(self, command: str, *replies: str) -> None:
        """Answer the next ``len(replies)`` ``command``s (EHLO, MAIL, RCPT, DATA) so."""
        with self._lock:
            self._scripts[command.upper()].extend(replies)

    def refuse(self, recipient: str, reply: str = "550 5.1.1 No such user") -> None:
        with self._lock:
            self._refusals[recipient.lower()] = reply

    def accept_all(self) -> None:
        """Take back every ``refuse``: from now on every recipient is accepted."""
        with self._lock:
            self._refusals.clear()

    def reset_max_concurrent(self) -> None:
        """Start counting ``max_concurrent`` again from the connections open now."""
        with self._lock:
            self._max_open = self._open

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> RecordingSink:
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                self._server = loop.run_until_complete(
                    loop.create_server(self._protocol, self.host, self.port, reuse_address=True)
                )
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name=f"sink-{self.host}", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError(f"the sink on {self.host}:{self.port} did not start")
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        """Close the listener and every open connection; the port can be reused."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def shut() -> None:
            if self._server is not None:
                self._server.close()
            for protocol in list(self._protocols):
                if protocol.transport is not None:
                    protocol.transport.abort()
            if self._server is not None:
                await self._server.wait_closed()
            # Let the sessions' own tasks end before the loop stops under them.
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            loop.stop()

        loop.call_soon_threadsafe(lambda: loop.create_task(shut()))
        thread.join(10)
        self._loop = self._thread = self._server = None

    # -- inside the sink's thread -------------------------------------------------------

    def _protocol(self) -> _RecordingSMTP:
        assert self._loop is not None
        excluded = [m for m in ("PLAIN", "LOGIN") if m not in self.auth_mechanisms]
        return _RecordingSMTP(
            self,
            _Handler(self),
            hostname=self.hostname,
            tls_context=self.tls.server_context() if self.tls else None,
            authenticator=self._authenticate if self.credentials else None,
            auth_require_tls=self.auth_require_tls,
            auth_exclude_mechanism=excluded if self.credentials else ["PLAIN", "LOGIN"],
            timeout=self.idle_timeout,
            loop=self._loop,
        )

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert self.credentials is not None
        assert isinstance(data, LoginPassword)
        login, password = data.login.decode(), data.password.decode()
        if (login, password) != self.credentials:
            return AuthResult(success=False, handled=False)
        seen = _seen(server)
        seen.auth_identity, seen.auth_mechanism = login, mechanism
        return AuthResult(success=True, auth_data=login)

    def _opened(self, peer_ip: str) -> SeenConnection:
        seen = SeenConnection(peer_ip=peer_ip, opened_at=self.clock())
        with self._lock:
            self._connections.append(seen)
            self._open += 1
            self._max_open = max(self._max_open, self._open)
        return seen

    def _closed(self, seen: SeenConnection | None) -> None:
        with self._lock:
            self._open -= 1
            if seen is not None:
                seen.closed_at = self.clock()

    def _next(self, command: str) -> str | None:
        with self._lock:
            queue = self._scripts.get(command)
            return queue.popleft() if queue else None

    def _refusal(self, recipient: str) -> str | None:
        with self._lock:
            return self._refusals.get(recipient.lower())


class _RecordingSMTP(SMTP):
    """aiosmtpd's server with a record per TCP connection (STARTTLS keeps the record)."""

    def __init__(self, sink: RecordingSink, handler: _Handler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.sink = sink
        self.seen: SeenConnection | None = None
        self._counted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.seen is None:
            peer = transport.get_extra_info("peername")
            self.seen = self.sink._opened(peer[0])
            self._counted = True
            self.sink._protocols.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._counted:
            self._counted = False
            self.sink._closed(self.seen)
            self.sink._protocols.discard(self)
        super().connection_lost(error)

    def _note(self, verb: str) -> None:
        assert self.seen is not None
        self.seen.commands.append(verb)
        # Commands already waiting behind this one arrived in the same write: pipelining.
        if self._reader._buffer:
            self.seen.pipelined.append(verb)

    async def smtp_MAIL(self, arg: str) -> None:
        self._note("MAIL")
        await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg: str) -> None:
        self._note("RCPT")
        await super().smtp_RCPT(arg)

    async def smtp_DATA(self, arg: str) -> None:
        self._note("DATA")
        await super().smtp_DATA(arg)

    async def smtp_RSET(self, arg: str) -> None:
        self._note("RSET")
        await super().smtp_RSET(arg)

    async def smtp_QUIT(self, arg: str) -> None:
        self._note("QUIT")
        await super().smtp_QUIT(arg)

    async def smtp_AUTH(self, arg: str) -> None:
        self._note("AUTH")
        await super().smtp_AUTH(arg)


def _seen(server: SMTP) -> SeenConnection:
    seen = getattr(server, "seen", None)
    assert isinstance(seen, SeenConnection)
    return seen


def _drop(server: SMTP) -> str:
    server.transport.abort()
    return "421 4.3.0 dropped"  # never arrives: the connection is gone


class _Handler:
    def __init__(self, sink: RecordingSink) -> None:
        self.sink = sink

    def handle_STARTTLS(self, server: SMTP, session: Session, envelope: Envelope) -> bool:
        _seen(server).tls = True
        return True

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        _seen(server).ehlo_names.append(hostname)
        scripted = self.sink._next("EHLO")
        if scripted == DROP:
            return [_drop(server)]
        if scripted:
            return [scripted]
        session.host_name = hostname
        if self.sink.credentials is None:
            # aiosmtpd writes an AUTH line even with no mechanism left; a sink without
            # credentials offers no AUTH at all.
            responses = [line for line in responses if not line.startswith("250-AUTH")]
        if self.sink.pipelining:
            return [*responses[:-1], "250-PIPELINING", responses[-1]]
        return responses

    async def handle_HELO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str
    ) -> str:
        _seen(server).ehlo_names.append(hostname)
        session.host_name = hostname
        return f"250 {self.sink.hostname}"

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        scripted = self.sink._next("MAIL")
        if scripted == DROP:
            return _drop(server)
        if scripted and not scripted.startswith("2"):
            return scripted
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        _seen(server).mail_at = self.sink.clock()
        return scripted or "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        scripted = self.sink._refusal(address) or self.sink._next("RCPT")
        if scripted == DROP:
            return _drop(server)
        if scripted and not scripted.startswith("2"):
            return scripted
        envelope.rcpt_tos.append(address)
        return scripted or "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.sink.data_delay:
            await asyncio.sleep(self.sink.data_delay)
        gate = self.sink.data_gate
        if gate is not None:
            await asyncio.get_running_loop().run_in_executor(None, gate.wait, 60.0)
        scripted = self.sink._next("DATA")
        if scripted == DROP:
            return _drop(server)
        reply = scripted or "250 2.0.0 Message accepted"
        _seen(server).transactions.append(
            SeenTransaction(
                mail_from=envelope.mail_from or "",
                mail_options=list(envelope.mail_options),
                rcpt_tos=list(envelope.rcpt_tos),
                data=bytes(envelope.original_content or b""),
                reply=reply,
                at=self.sink.clock(),
                begun_at=_seen(server).mail_at,
            )
        )
        return reply


# -- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A self-signed certificate for sink.test, made by ``openssl req`` for this run."""
    openssl = shutil.which("openssl")
    if openssl is None:
        skip_or_fail("openssl is not installed (needed for the sink's TLS certificate)")
    directory = tmp_path_factory.mktemp("tls")
    files = TlsFiles(cert=directory / "sink.crt", key=directory / "sink.key")
    subprocess.run(
        [
            str(openssl),
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=sink.test",
            "-addext",
            "subjectAltName=DNS:sink.test,IP:127.0.0.1",
            "-keyout",
            str(files.key),
            "-out",
            str(files.cert),
        ],
        check=True,
        capture_output=True,
    )
    return files


@pytest.fixture
def sink_factory() -> Iterator[Any]:
    """``sink_factory(host="127.0.0.1", **options)`` starts a RecordingSink; all are
    stopped after the test."""
    started: list[RecordingSink] = []

    def make(host: str = "127.0.0.1", **options: Any) -> RecordingSink:
        sink = RecordingSink(host, **options).start()
        started.append(sink)
        return sink

    yield make
    for sink in started:
        sink.stop()


@pytest.fixture
def sink(sink_factory: Any) -> RecordingSink:
    """A plain sink on 127.0.0.1: ESMTP with PIPELINING, SIZE, 8BITMIME; no TLS, no AUTH."""
    sink: RecordingSink = sink_factory()
    return sink
