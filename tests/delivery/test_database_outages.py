"""PostgreSQL failing as a network fails it, with a TCP forwarder of the test's own between
vmta and the real server at 127.0.0.1:5432 (the server itself is never stopped): cuts
during a delivery run strand no accepted recipient (a body read, an outcome write or a
lease renewal that fails puts the delivery back or defers it), counted at a real sink."""

from __future__ import annotations

import asyncio
import logging
import smtplib
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from tests.delivery.conftest import FAST, RunningPlane, eventually
from tests.peers.forwarder import TcpForwarder
from tests.peers.sink import RecordingSink
from vmta.delivery.engine.spool_gateway import ACCEPT_DEADLINE
from vmta.runtime.data_plane import DataPlane
from vmta.runtime.data_plane_settings import DataPlaneSettings
from vmta.runtime.server import bind_listener
from vmta.runtime.settings import Listen
from vmta.store.store import Store

pytestmark = pytest.mark.peers


@pytest.fixture
def pg_forwarder(pg_url: str) -> Iterator[tuple[TcpForwarder, str]]:
    """A forwarder to the server of ``pg_url`` (migrated), and the URL through it."""
    Store.open(pg_url).close()  # migrated directly, not through the forwarder
    real = make_url(pg_url)
    with TcpForwarder(real.host or "127.0.0.1", real.port or 5432) as forwarder:
        through = real.set(host="127.0.0.1", port=forwarder.port)
        yield forwarder, through.render_as_string(hide_password=False)


# The partition test's accept deadline: vmta's 25 s (ACCEPT_DEADLINE, within the
# contract's 30 s) shortened, so that a partition longer than it costs seconds, not a minute.
SHORT_ACCEPT_DEADLINE = 2.0


@pytest.fixture
async def cut_plane(
    request: pytest.FixtureRequest, pg_forwarder: tuple[TcpForwarder, str], tmp_path: Path
) -> AsyncIterator[tuple[RunningPlane, TcpForwarder]]:
    """A data plane on PostgreSQL through the forwarder; an indirect parameter, if any,
    is its accept deadline (seconds)."""
    forwarder, url = pg_forwarder
    store = Store.open(url, migrate=False)
    data_dir = tmp_path / "plane"
    data_dir.mkdir()
    settings = DataPlaneSettings(
        hostname="vmta.test",
        engine=FAST,
        accept_deadline=getattr(request, "param", ACCEPT_DEADLINE),
    )
    plane = DataPlane(store, settings, data_dir)
    sock = bind_listener(Listen("127.0.0.1", 0), "SMTP")
    await plane.start(sock)
    try:
        yield RunningPlane(plane, sock.getsockname()[1], store), forwarder
    finally:
        forwarder.restore()
        await plane.stop()
        store.close()


def try_send(port: int, subject: str) -> bool:
    """One message over real SMTP; True when vmta answered 250 (accepted)."""
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
            client.sendmail(
                "sender@src.test",
                ["rcpt@dest.test"],
                f"From: sender@src.test\r\nSubject: {subject}\r\n\r\nbody\r\n".encode(),
            )
        return True
    except (smtplib.SMTPException, OSError):
        return False


def seen(sink: RecordingSink) -> Counter[str]:
    return Counter(t.data.split(b"Subject: ")[1].split(b"\r\n")[0].decode() for t in sink.messages)


async def test_repeated_cuts_during_delivery_strand_no_accepted_recipient(
    cut_plane: tuple[RunningPlane, TcpForwarder], sink_factory: Any
) -> None:
    plane, forwarder = cut_plane
    sink = sink_factory()
    sink.data_delay = 0.05  # deliveries in flight while the cuts come
    plane.add_relay("relay-1", sink.port)
    plane.set_default("relay-1")
    accepted: list[str] = []
    done = asyncio.Event()
    cuts = 0

    async def inject() -> None:
        # At least 60 messages, and on until three cuts have come: a fast machine sends
        # 60 before the third (bounded by the count).
        try:
            for n in range(1000):
                if n >= 60 and cuts >= 3:
                    break
                subject = f"m{n}"
                if await asyncio.to_thread(try_send, plane.smtp_port, subject):
                    accepted.append(subject)
        finally:
            done.set()

    async def cut_repeatedly() -> None:
        nonlocal cuts
        while not done.is_set() and cuts < 12:  # bounded
            await asyncio.sleep(0.25)
            forwarder.cut()
            cuts += 1

    await asyncio.gather(inject(), cut_repeatedly())
    assert cuts >= 3, "the run ended before the cuts"
    assert len(accepted) >= 10, f"too few accepted to tell anything: {accepted}"
    # The database is back (each cut is over at once): every accepted message is sent,
    # within the contract's 60 s, not at a lease expiry (300 s here).
    await eventually(
        lambda: set(accepted) <= set(seen(sink)),
        timeout=60,
        what=f"every accepted message at the sink; missing {set(accepted) - set(seen(sink))}",
    )
    await eventually(lambda: plane.plane.engine.in_memory == 0, what="memory emptied")


def timed_send(port: int, subject: str) -> tuple[int, float, str]:
    """One transaction over real SMTP, timed from the end of DATA to vmta's reply:
    (reply code, seconds, queue id or reply text). 0 when the session itself failed."""
    with smtplib.SMTP("127.0.0.1", port, timeout=120) as client:
        client.ehlo()
        client.mail("sender@src.test")
        client.rcpt("rcpt@dest.test")
        started = time.monotonic()
        try:
            code, reply = client.data(
                f"From: sender@src.test\r\nSubject: {subject}\r\n\r\nbody\r\n".encode()
            )
        except smtplib.SMTPServerDisconnected:
            return 0, time.monotonic() - started, "disconnected"
        return code, time.monotonic() - started, reply.decode().rsplit(" ", 1)[-1]


# Every answer comes within the accept deadline plus this much (a loaded machine's slack);
# a reply that waited for the database instead comes only when the partition ends.
ANSWER_BOUND = SHORT_ACCEPT_DEADLINE + 5.0
PARTITION = ANSWER_BOUND + 5.0  # seconds: longer than any answer may take


@pytest.mark.slow(13)
@pytest.mark.parametrize("cut_plane", [SHORT_ACCEPT_DEADLINE], indirect=True)
async def test_a_silent_partition_answers_every_injection_by_the_accept_deadline(
    cut_plane: tuple[RunningPlane, TcpForwarder], sink_factory: Any
) -> None:
    # vmta's own deadline keeps the contract (an answer within 30 s); this test runs with
    # a shorter one so that the partition outlasting it takes seconds.
    assert ACCEPT_DEADLINE < 30.0
    plane, forwarder = cut_plane
    sink = sink_factory()
    plane.add_relay("relay-1", sink.port)
    plane.set_default("relay-1")
    assert (await asyncio.to_thread(timed_send, plane.smtp_port, "before"))[0] == 250
    forwarder.blackhole()  # nothing passes, nothing is reset: the server is just silent
    answers: list[tuple[int, float, str]] = []
    started = time.monotonic()

    async def client(n: int) -> None:
        sent = 0
        while time.monotonic() - started < PARTITION - ANSWER_BOUND and sent < 20:  # bounded
            answers.append(await asyncio.to_thread(timed_send, plane.smtp_port, f"c{n}-{sent}"))
            sent += 1

    await asyncio.gather(*(client(n) for n in range(3)))
    await asyncio.sleep(max(0.0, PARTITION - (time.monotonic() - started)))
    forwarder.restore()
    assert answers, "no transaction was tried during the partition"
    assert all(seconds <= ANSWER_BOUND for _, seconds, _ in answers), answers
    assert {code for code, _, _ in answers} <= {250, 451}, answers
    assert any(code == 451 for code, _, _ in answers)
    # Back: mail is taken again (bounded), and nothing was acknowledged without a commit.
    for _ in range(60):
        code, _, queue_id = await asyncio.to_thread(timed_send, plane.smtp_port, "after")
        if code == 250:
            break
        await asyncio.sleep(1)
    assert code == 250
    acknowledged = [qid for code, _, qid in answers if code == 250] + [queue_id]
    assert all(plane.message(qid) is not None for qid in acknowledged)
    # Refused ones stay refused: an accept whose deadline passed is not committed once
    # the database is back (at most the batch that hung when the partition began, one
    # message per client, may be). The writer keeps order, so "after" came last.
    with plane.store.read() as conn:
        stored = conn.execute(text("SELECT count(*) FROM messages")).scalar_one()
    assert stored <= 1 + len(acknowledged) + 3, (stored, len(answers), len(acknowledged))


async def test_refusals_during_an_outage_log_one_traceback_then_a_line_each(
    cut_plane: tuple[RunningPlane, TcpForwarder], caplog: pytest.LogCaptureFixture
) -> None:
    plane, forwarder = cut_plane
    forwarder.refuse()  # the server's port resets every connection
    plane.plane.store.engine.dispose()  # no pooled connection outlives the cut
    codes = [(await asyncio.to_thread(timed_send, plane.smtp_port, f"m{n}"))[0] for n in range(4)]
    assert codes == [451] * 4
    refusals = [r for r in caplog.records if "could not store a message" in r.getMessage()]
    assert len(refusals) == 4
    assert [bool(r.exc_info) for r in refusals] == [True, False, False, False]
    assert all("DatabaseUnavailable" in r.getMessage() for r in refusals[1:])  # why, on one line

    def polls() -> list[logging.LogRecord]:  # the spool is polled every 0.1 s here
        return [r for r in caplog.records if "polling the spool failed" in r.getMessage()]

    await eventually(lambda: len(polls()) >= 3, what="polls failing")
    assert [bool(r.exc_info) for r in polls()][:3] == [True, False, False]
    forwarder.restore()
    for _ in range(60):  # bounded
        if (await asyncio.to_thread(timed_send, plane.smtp_port, "back"))[0] == 250:
            break
        await asyncio.sleep(0.5)
    assert any("works again after" in r.getMessage() for r in caplog.records)


async def test_a_plane_stopped_during_an_outage_leaves_the_next_its_own_first_traceback(
    pg_forwarder: tuple[TcpForwarder, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each data plane keeps its own outage log: the first plane of this process stops
    while the database is still away, and the next one, in the same process, logs its
    first refusal in full all the same (a plane restarted in-process)."""
    forwarder, url = pg_forwarder
    planes: list[tuple[DataPlane, int, Store]] = []
    for name in ("first", "second"):
        store = Store.open(url, migrate=False)
        (tmp_path / name).mkdir()
        plane = DataPlane(
            store, DataPlaneSettings(hostname="vmta.test", engine=FAST), tmp_path / name
        )
        sock = bind_listener(Listen("127.0.0.1", 0), "SMTP")
        await plane.start(sock)
        planes.append((plane, sock.getsockname()[1], store))
    (first, first_port, first_store), (second, second_port, second_store) = planes
    try:
        forwarder.refuse()
        for store in (first_store, second_store):
            store.engine.dispose()  # no pooled connection outlives the cut

        def refusals() -> list[logging.LogRecord]:
            return [r for r in caplog.records if "could not store a message" in r.getMessage()]

        for n in range(2):
            assert (await asyncio.to_thread(timed_send, first_port, f"a{n}"))[0] == 451
        assert [bool(r.exc_info) for r in refusals()] == [True, False]
        await first.stop()  # during the outage: its log never saw the end of it
        first_store.close()
        assert (await asyncio.to_thread(timed_send, second_port, "b0"))[0] == 451
        assert [bool(r.exc_info) for r in refusals()] == [True, False, True]
    finally:
        forwarder.restore()
        await second.stop()
        second_store.close()
