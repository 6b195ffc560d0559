"""A load-generating SMTP client that remembers what the server promised.

Several concurrent sessions (asyncio, in a thread of their own) send numbered messages.
Each attempt carries a unique Message-ID; the queue id of every ``250`` reply to DATA is
kept. A session whose connection breaks (the server was killed) reconnects until the
server is back, and the message whose DATA got no ``250`` is sent again as a new attempt
with a new Message-ID: the server promised nothing for the old one.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field

QUEUED_AS = re.compile(r"^250 .*queued as (\S+)$")
FILLER = b"".join(b"line %02d of a message body of about one kilobyte.\r\n" % i for i in range(20))


class SmtpRefused(Exception):
    """A reply this client did not expect; the server refused something for good."""


class SmtpTemporary(Exception):
    """A 4xx reply outside DATA (421 when a server closes): reconnect and go on."""


@dataclass(frozen=True)
class Accepted:
    number: int
    message_id: str
    queue_id: str
    recipients: tuple[str, ...]


@dataclass
class Injection:
    host: str
    port: int
    total: int
    sessions: int = 8
    deadline: float = 300.0  # seconds; the whole injection gives up after this
    token: str = "run"
    accepted: dict[str, Accepted] = field(default_factory=dict)  # by Message-ID
    unanswered: list[str] = field(default_factory=list)  # Message-IDs sent without a 250
    temporary_refusals: int = 0  # 4xx to DATA: not accepted, sent again
    errors: list[str] = field(default_factory=list)  # permanent refusals: a test failure
    connection_failures: int = 0
    finished: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _todo: deque[int] = field(default_factory=deque)
    _attempts: dict[int, int] = field(default_factory=dict)
    _thread: threading.Thread | None = None

    # ---- what the test reads (any thread) ------------------------------------------

    def accepted_count(self) -> int:
        with self._lock:
            return len(self.accepted)

    def snapshot(self) -> list[Accepted]:
        with self._lock:
            return list(self.accepted.values())

    # ---- messages ------------------------------------------------------------------

    def recipients(self, number: int) -> tuple[str, ...]:
        """Every fifth message has two recipients; the others one."""
        if number % 5 == 0:
            return (f"r{number}a@sink.test", f"r{number}b@sink.test")
        return (f"r{number}@sink.test",)

    def message(self, number: int, message_id: str) -> bytes:
        head = (
            f"From: <load@injector.test>\r\n"
            f"To: <{self.recipients(number)[0]}>\r\n"
            f"Subject: message {number}\r\n"
            f"Message-ID: <{message_id}>\r\n"
            "\r\n"
        )
        return head.encode("ascii") + FILLER

    # ---- running ---------------------------------------------------------------------

    def start(self) -> Injection:
        self._todo.extend(range(self.total))
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        return self

    def join(self, timeout: float) -> None:
        assert self._thread is not None
        self._thread.join(timeout)

    async def _run(self) -> None:
        end = time.monotonic() + self.deadline
        try:
            await asyncio.gather(*(self._session(end) for _ in range(self.sessions)))
        finally:
            self.finished.set()

    def _next(self) -> tuple[int, str] | None:
        with self._lock:
            if not self._todo:
                return None
            number = self._todo.popleft()
            attempt = self._attempts.get(number, 0) + 1
            self._attempts[number] = attempt
            return number, f"{number}.{attempt}.{self.token}@injector.test"

    def _again(self, number: int) -> None:
        with self._lock:
            self._todo.append(number)

    async def _session(self, end: float) -> None:
        while time.monotonic() < end and not self.errors:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port), 10
                )
            except (OSError, TimeoutError):
                self.connection_failures += 1
                await asyncio.sleep(0.1)  # the server is (re)starting
                continue
            current: tuple[int, str] | None = None
            try:
                await _expect(reader, "220")
                writer.write(b"EHLO injector.test\r\n")
                await _expect(reader, "250")
                while time.monotonic() < end:
                    current = self._next()
                    if current is None:
                        return
                    await self._transaction(reader, writer, *current)
                    current = None
            except (OSError, asyncio.IncompleteReadError, TimeoutError, SmtpTemporary):
                self.connection_failures += 1
            except SmtpRefused as exc:
                self.errors.append(str(exc))
                return
            finally:
                if current is not None:  # sent without a 250: not accepted, send again
                    with self._lock:
                        self.unanswered.append(current[1])
                    self._again(current[0])
                writer.close()

    async def _transaction(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int, mid: str
    ) -> None:
        recipients = self.recipients(number)
        # PIPELINING (RFC 2920): the envelope and DATA in one write.
        writer.write(
            b"MAIL FROM:<load@injector.test>\r\n"
            + b"".join(b"RCPT TO:<%s>\r\n" % r.encode() for r in recipients)
            + b"DATA\r\n"
        )
        await _expect(reader, "250")
        for _ in recipients:
            await _expect(reader, "250")
        await _expect(reader, "354")
        writer.write(self.message(number, mid) + b".\r\n")
        reply = await _reply(reader)
        if reply.startswith("4"):
            with self._lock:
                self.temporary_refusals += 1
                self.unanswered.append(mid)
            self._again(number)
            return
        match = QUEUED_AS.match(reply)
        if match is None:
            raise SmtpRefused(f"DATA of {mid}: {reply}")
        with self._lock:
            self.accepted[mid] = Accepted(number, mid, match.group(1), recipients)


async def _reply(reader: asyncio.StreamReader) -> str:
    """One (possibly multi-line) reply; its last line (RFC 5321 §4.2.1)."""
    while True:
        line = await asyncio.wait_for(reader.readuntil(b"\r\n"), 60)
        text = line.decode("ascii", "replace").rstrip("\r\n")
        if len(text) < 4 or text[3] != "-":
            return text


async def _expect(reader: asyncio.StreamReader, code: str) -> str:
    reply = await _reply(reader)
    if reply.startswith("4") and not code.startswith("4"):
        raise SmtpTemporary(reply)
    if not reply.startswith(code):
        raise SmtpRefused(f"expected {code}, got {reply!r}")
    return reply
