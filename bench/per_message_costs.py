"""What each piece of per-message work on the relay path costs, measured alone.

    .venv/bin/python bench/per_message_costs.py [--messages N] [--sizes 1024,10240,102400]

Method, printed with the figures:

1. Each piece runs in this one process, in a loop of N messages (default 3,000) after a
   warm-up of 200, on the same message bytes as ``bench/relay_vs_postfix.py`` sends
   (a bulk message's headers and a body of 76-character lines, of each size). The figure
   is the CPU time (``process_time``) per message, in microseconds: the machine may be
   shared, and CPU time is what load disturbs least.
2. The pieces, each as the relay path runs it for one message with one recipient:
   - ``hop count``: ``check_hops`` (the Received fields counted at DATA);
   - ``keyring check``: what intake does for a client that may relay when no key signs
     the message (the ``X-GreenArrow-DKIM`` search, then ``MessageSigner.sign`` asking
     the keyring, whose keys are loaded);
   - ``message log``: ``ActivityLog`` with ``VMTA_LOG_MESSAGES=each`` (its accepted and
     delivered INFO lines, through vmta's own log set-up, to a file) minus ``off``;
   - ``client transaction``: ``SmtpConversation.send`` after ``reset`` for a message
     (RSET owed, MAIL, RCPT, DATA pipelined; the end of data, whose reply names a new
     queue id each time), the server's replies already received (an in-memory stream),
     so only vmta's own work is counted; of which: the three replies turned into
     ``ReplyLine`` with their MailerQ stage, and reading the pipelined replies in three
     steps (MAIL, RCPTs, DATA) instead of one, the difference of two such loops;
   - ``outcome storing``: ``OutcomeRecorder._store`` of one outcome, the spool taking it
     after one turn of the loop (no database);
   - ``accept's hand-over``: ``SpoolGateway.accept`` with its deadline, around a write
     cycle that does nothing (one accept per cycle: the thread hand-over is not shared
     as it is under load);
   - ``outcome record``: ``OutcomeRecorder.outcome`` (the retry policy's verdict and the
     ``Outcome`` with its MailerQ facts) plus the delivery log line;
   - ``event rows``: ``SqlSpool.record`` on SQLite in batches of 20 outcomes, with one
     event subscription (an HTTP destination taking every type) minus without.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import platform
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from vmta.delivery.engine.occupancy import Occupancy
from vmta.delivery.engine.outcome_recorder import OutcomeRecorder, RecorderSettings
from vmta.delivery.engine.spool_gateway import SpoolGateway
from vmta.delivery.outcomes.activity_log import ActivityLog
from vmta.delivery.outcomes.delivery_log import DeliveryLog
from vmta.delivery.routing.router import Deliver
from vmta.domain.attempts.delivery_outcome import ReplyLine, Verdict
from vmta.domain.attempts.smtp_reply import SmtpReply
from vmta.domain.attempts.spool_records import DELIVERED, Job, NewMessage, Outcome
from vmta.domain.attempts.transport_port import SessionFacts
from vmta.domain.clock import SystemClock
from vmta.domain.message.dkim_request import header_values
from vmta.domain.paths.egress_path import EgressPath
from vmta.domain.paths.egress_route import EgressRoute
from vmta.domain.paths.mail_loops import check_hops
from vmta.domain.reports.delivery_event import EVENT_TYPES, EventSubscription
from vmta.runtime import logs
from vmta.signing.keyring import Keyring
from vmta.signing.message_signer import MessageSigner
from vmta.smtp.client import SessionOptions, SmtpSession
from vmta.smtp.client_wire import command_lines
from vmta.smtp.transport import SmtpConversation, reply_line
from vmta.store.spool import SqlSpool
from vmta.store.store import Store

HEAD = (
    "From: News <news@example.com>\r\nTo: someone@example.net\r\nSubject: The weekly letter\r\n"
    "Date: Mon, 07 Dec 2026 03:00:00 +0000\r\nMessage-ID: <abc.123@example.com>\r\n"
    "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
)
WARMUP = 200


def message(size: int) -> bytes:
    line = ("lorem ipsum dolor sit amet " * 3)[:74] + "\r\n"
    body = line * (size // len(line) + 1)
    return (HEAD + body).encode()[:size]


def cpu_us(run: Callable[[int], None], count: int) -> float:
    """CPU µs per call of ``run(i)``, after a warm-up."""
    for i in range(WARMUP):
        run(i)
    started = time.process_time()
    for i in range(count):
        run(i)
    return (time.process_time() - started) / count * 1e6


async def cpu_us_async(run: Callable[[int], Awaitable[object]], count: int) -> float:
    for i in range(WARMUP):
        await run(i)
    started = time.process_time()
    for i in range(count):
        await run(i)
    return (time.process_time() - started) / count * 1e6


class _NullTransport(asyncio.WriteTransport):
    """Takes every write; never paused."""

    def write(self, data: Any) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (16384, 65536)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


def _session(kind: type[SmtpSession]) -> tuple[SmtpSession, asyncio.StreamReader]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**16, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    writer = asyncio.StreamWriter(_NullTransport(), protocol, reader, loop)
    session = kind(reader, writer, "sink.test", SessionOptions("vmta.test"), "127.0.0.1")
    session.extensions = {"PIPELINING": "", "SIZE": "", "8BITMIME": "", "DSN": ""}
    return session, reader


REPLIES = b"250 2.0.0 Ok\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"


class OneStepSession(SmtpSession):
    """The pipelined group's replies read in one step, as before wave 3 (no MailerQ
    step known between them): what reading them in three steps is measured against."""

    async def _pipelined(
        self, mail: str, rcpts: list[str]
    ) -> tuple[SmtpReply, list[SmtpReply], SmtpReply | None]:
        timeout = self._options.command_timeout
        owed, self._reset_owed = self._reset_owed, False
        commands = ["RSET", mail, *rcpts, "DATA"] if owed else [mail, *rcpts, "DATA"]
        self._writer.write(command_lines(commands))
        if owed:
            await self._read_reply("reset", timeout)
        replies = await self._read_replies(len(rcpts) + 2, "transaction", timeout)
        await self._drain(timeout)
        return replies[0], replies[1:-1], replies[-1]


async def client_costs(data: bytes, count: int) -> tuple[float, float, float]:
    """CPU µs of a transaction, of its replies turned into ``ReplyLine`` with their
    MailerQ stages, and of reading the pipelined replies in three steps (against one)."""
    spent = []
    for kind in (SmtpSession, OneStepSession):
        session, reader = _session(kind)
        conversation = SmtpConversation(session, "127.0.0.1", "sink.test")

        async def one(
            i: int,
            reader: asyncio.StreamReader = reader,
            conversation: SmtpConversation = conversation,
        ) -> None:
            await conversation.reset()
            # The end of data's reply names a new queue id each time, as servers' do.
            reader.feed_data(REPLIES + b"250 2.0.0 Ok: queued as %08X\r\n" % i)
            await conversation.send("sender@example.com", ["rcpt@example.net"], data)

        spent.append(await cpu_us_async(one, count))
    replies = [SmtpReply(250, "Ok", "2.1.0"), SmtpReply(250, "Ok", "2.1.5"), SmtpReply(250, "Ok")]

    def stages(_: int) -> None:
        reply_line(replies[0], "mailfrom")
        reply_line(replies[1], "rcptto")
        reply_line(replies[2], "message")

    return spent[0], cpu_us(stages, count), spent[0] - spent[1]


class _Spool:
    """Takes each outcome after a hand-over (a future resolved by the loop), as the
    spool gateway's batch runner does."""

    async def record(self, outcome: Outcome) -> None:
        future = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(future.set_result, None)
        await future


async def storing_cost(count: int) -> float:
    """CPU µs of handing one outcome to the spool and awaiting it (``_store``)."""
    recorder = OutcomeRecorder(
        spool=_Spool(),  # type: ignore[arg-type]  # record() is all that storing uses
        clock=SystemClock(),
        settings=RecorderSettings(),
        delivery_log=DeliveryLog(None),
        occupancy=Occupancy(10),
        bounces=None,
    )
    outcome = Outcome(1, "m1", time.time(), DELIVERED, reply="250 2.0.0 Ok")
    return await cpu_us_async(lambda _: recorder._store([outcome]), count)


class _WriteCycles:
    """The spool's write cycle doing nothing: what is left is the gateway's own work,
    the hand-over to its writer thread and back included."""

    def write_cycle(self, batch: Any, lease_until: Any, unclaimed: Any, outcomes: Any) -> list[Job]:
        return []


async def accept_cost(count: int) -> float:
    """CPU µs of ``SpoolGateway.accept`` around a write cycle that does nothing."""
    gateway = SpoolGateway(_WriteCycles(), lease_seconds=300)  # type: ignore[arg-type]
    gateway.start()
    now = time.time()
    message = NewMessage("m1", now, now + 60, "s@example.com", ["r@example.net"], b"x")
    try:
        return await cpu_us_async(lambda _: gateway.accept(message, now), count)
    finally:
        await gateway.stop()


async def keyring_cost(data: bytes, count: int, store: Store) -> float:
    clock = SystemClock()
    signer = MessageSigner(Keyring(store, clock), clock)
    await signer.keyring.keys()  # loaded once, as after the first message

    async def one(_: int) -> None:
        values = header_values(data)
        assert not values
        await signer.sign(data, directives=None)

    return await cpu_us_async(one, count)


def log_cost(data: bytes, count: int, log_file: Path) -> float:
    job = _job(1)
    outcome = Outcome(1, "m1", time.time(), DELIVERED, reply="250 2.0.0 Ok: queued as 4ABC")
    stderr = sys.stderr
    with log_file.open("a") as handle:
        sys.stderr = handle
        try:
            logs.configure("INFO")
        finally:
            sys.stderr = stderr
        spent = {}
        for mode in ("each", "off"):
            activity = ActivityLog(mode)

            def one(i: int, activity: ActivityLog = activity) -> None:
                activity.accepted(
                    "4ABC", client="127.0.0.1", auth_name=None, data=data, recipients=1
                )
                activity.outcome(job, outcome)

            spent[mode] = cpu_us(one, count)
    logging.getLogger().handlers.clear()
    return spent["each"] - spent["off"]


def _job(recipient_id: int, message_id: str = "m1") -> Job:
    now = time.time()
    return Job(
        recipient_id=recipient_id,
        message_id=message_id,
        address="rcpt@example.net",
        attempts=0,
        mail_from="sender@example.com",
        received_at=now,
        expires_at=now + 86400,
        vmta_selector=None,
        routing_memory=None,
        is_bounce=False,
    )


def recorder_cost(count: int, log_path: Path) -> float:
    recorder = OutcomeRecorder(
        spool=None,  # type: ignore[arg-type]  # outcome() and the log line never store
        clock=SystemClock(),
        settings=RecorderSettings(),
        delivery_log=DeliveryLog(log_path),
        occupancy=Occupancy(10),
        bounces=None,
    )
    path = EgressPath(
        throttle_key=("relay", "1"),
        destination_host="127.0.0.1",
        destination_port=25,
        route=EgressRoute("127.0.0.1", "127.0.0.1"),
        ehlo_name="vmta.test",
        relay_name="sink",
    )
    decision = Deliver(path, "sink", "sink", effective_id=1)
    reply = ReplyLine(250, "2.0.0 Ok: queued as 4ABC", stage="message")
    session = SessionFacts(messages=3, dsn=True)
    job = _job(1)

    class Conversation:
        remote_host = "127.0.0.1"
        remote_ip = "127.0.0.1"

    def one(_: int) -> None:
        now = time.time()
        outcome = recorder.outcome(
            job,
            Verdict.DELIVERED,
            reply,
            decision,
            Conversation(),
            now,
            None,
            session,  # type: ignore[arg-type]
        )
        recorder._log_attempt(job, outcome)

    return cpu_us(one, count)


def event_cost(count: int, directory: Path) -> float:
    """CPU µs per outcome that one event subscription adds to recording."""
    spent = {}
    for subscribed in (True, False):
        store = Store.open(f"sqlite:///{directory / f'events-{subscribed}.db'}")
        subscriptions = (EventSubscription("http", frozenset(EVENT_TYPES)),) if subscribed else ()
        spool = SqlSpool(store, "bench-node", event_subscriptions=subscriptions)
        total = count + WARMUP
        now = time.time()
        jobs: list[Job] = []
        for start in range(0, total, 100):
            batch = [
                NewMessage(
                    id=f"m{subscribed}{i}",
                    received_at=now,
                    expires_at=now + 86400,
                    mail_from="sender@example.com",
                    recipients=["rcpt@example.net"],
                    body=b"x",
                )
                for i in range(start, min(total, start + 100))
            ]
            jobs += spool.accept(batch, now + 3600)
        outcomes = [
            Outcome(
                j.recipient_id,
                j.message_id,
                now,
                DELIVERED,
                reply="250 2.0.0 Ok",
                source_ip="127.0.0.1",
                remote_host="127.0.0.1",
                remote_ip="127.0.0.1",
                outcome_label="delivered",
                stage="message",
                session_messages=1,
                remote_dsn=False,
            )
            for j in jobs
        ]
        for start in range(0, WARMUP, 20):
            spool.record(outcomes[start : start + 20])
        started = time.process_time()
        for start in range(WARMUP, total, 20):
            spool.record(outcomes[start : start + 20])
        spent[subscribed] = (time.process_time() - started) / count * 1e6
        store.close()
    return spent[True] - spent[False]


async def run(args: argparse.Namespace, directory: Path) -> None:
    count = args.messages
    store = Store.open(f"sqlite:///{directory / 'keys.db'}")
    sizes = [int(s) for s in args.sizes.split(",")]
    rows: list[tuple[str, list[float]]] = []
    datas = [message(size) for size in sizes]
    rows.append(("hop count", [cpu_us(lambda _, d=d: check_hops(d, 100), count) for d in datas]))
    rows.append(("keyring check", [await keyring_cost(d, count, store) for d in datas]))
    rows.append(("message log (each)", [log_cost(d, count, directory / "log") for d in datas]))
    client = [await client_costs(d, count) for d in datas]
    rows.append(("client transaction", [c[0] for c in client]))
    rows.append(("  of which replies to ReplyLine, with stages", [c[1] for c in client]))
    rows.append(("  of which three-step reading (vs one)", [c[2] for c in client]))
    rows.append(("outcome storing (hand-over)", [await storing_cost(count)] * len(sizes)))
    rows.append(("accept's hand-over and deadline", [await accept_cost(count)] * len(sizes)))
    per_outcome = recorder_cost(count, directory / "delivery.log")
    rows.append(("outcome record", [per_outcome] * len(sizes)))
    if not args.no_events:
        events = event_cost(count, directory)
        rows.append(("event rows (1 subscription)", [events] * len(sizes)))
    store.close()
    print(
        f"# {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()}"
        f" CPUs, load average {os.getloadavg()[0]:.1f}; {count} messages per cell"
    )
    print("| piece | " + " | ".join(f"{s // 1024} KB" for s in sizes) + " |")
    print("|---|" + "---:|" * len(sizes))
    for name, values in rows:
        print(f"| {name} | " + " | ".join(f"{v:.1f}" for v in values) + " |")
    print("(CPU µs per message)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--sizes", default="1024,10240,102400")
    parser.add_argument("--no-events", action="store_true", help="skip the SQLite part")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(args, Path(tmp)))


if __name__ == "__main__":
    main()
