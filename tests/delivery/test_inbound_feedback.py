"""The inbound listener and the feedback processor on a real store (SQLite and
PostgreSQL), driven over real SMTP by smtplib: what RCPT accepts and refuses, that
accepted mail is committed before the 250, and which reports give which events."""

from __future__ import annotations

import asyncio
import smtplib
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import pytest
from sqlalchemy import insert, select

from vmta.domain.config.incoming_domain import BOUNCE, FORWARDING, SPAM_COMPLAINT, Mailbox
from vmta.domain.reports.bad_address import BadAddressPolicy
from vmta.domain.reports.delivery_event import EventSubscription
from vmta.domain.reports.dsn import FailedRecipient, build_dsn
from vmta.domain.reports.verp import VerpTarget, verp_address
from vmta.feedback.directory import MailboxBook
from vmta.feedback.processor import FeedbackProcessor
from vmta.smtp.inbound_listener import InboundHandler, InboundSettings, start_inbound_listener
from vmta.smtp.listener import Listener
from vmta.store.inbound_mail import verp_secret
from vmta.store.incoming_domains import IncomingDomainRepository
from vmta.store.store import Store
from vmta.store.tables import (
    event_deliveries,
    events,
    feedback_reports,
    inbound_messages,
    messages,
    mq_suppressions,
    recipients,
)

QUEUE_ID = "0190A1B2C3D4E5F60718"
SUBSCRIPTIONS = [
    EventSubscription("http", frozenset({"bounce_all", "scomp", "bounce_bad_address"})),
    EventSubscription("rabbitmq", frozenset({"report"})),
]


@dataclass
class Inbound:
    store: Store
    port: int
    book: MailboxBook
    processor: FeedbackProcessor
    listener: Listener
    domain_id: int
    recipient_id: int

    @property
    def verp(self) -> str:
        return verp_address(
            self.book.secret, "return@bounces.test", VerpTarget(QUEUE_ID, self.recipient_id)
        )


def sent_message(store: Store) -> int:
    """A message vmta sent from the bounce mailbox to alice@dest.test."""
    now = time.time()
    body = (
        b"From: news@example.com\r\nMessage-ID: <orig-1@example.com>\r\n"
        b"Subject: hi\r\n\r\nhello\r\n"
    )
    with store.write() as conn:
        conn.execute(
            insert(messages).values(
                id=QUEUE_ID,
                received_at=now,
                expires_at=now + 3600,
                mail_from="return@bounces.test",
                size=len(body),
                body=body,
                kept_headers={"x-greenarrow-listid": "list7", "x-greenarrow-sendid": "send9"},
            )
        )
        result = conn.execute(
            insert(recipients).values(
                message_id=QUEUE_ID,
                address="alice@dest.test",
                state="delivered",
                next_attempt_at=now,
                updated_at=now,
            )
        )
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])


@pytest.fixture
async def inbound(store: Store) -> AsyncIterator[Inbound]:
    with store.write() as conn:
        repo = IncomingDomainRepository(conn)
        domain_id = repo.insert("bounces.test", "normal")
        repo.insert_mailbox(Mailbox(0, domain_id, BOUNCE, "return"))
        repo.insert_mailbox(Mailbox(0, domain_id, SPAM_COMPLAINT, "fbl"))
        repo.insert_mailbox(Mailbox(0, domain_id, FORWARDING, "fwd", forward_to=("ops@else.test",)))
    book = MailboxBook(store, verp_secret(store), max_age=0.0)
    processor = FeedbackProcessor(
        store, book, "node-a", SUBSCRIPTIONS, policy=BadAddressPolicy(hard=1, soft=3)
    )
    settings = InboundSettings(hostname="in.vmta.test")
    handler = InboundHandler(store, book, settings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    listener = await start_inbound_listener(sock, handler, settings)
    try:
        yield Inbound(
            store, sock.getsockname()[1], book, processor, listener, domain_id, sent_message(store)
        )
    finally:
        await listener.stop(1.0)
        sock.close()


def smtp(port: int, sender: str, rcpts: list[str], data: bytes) -> dict[str, tuple[int, bytes]]:
    """One transaction; the RCPT replies of the refused recipients (sendmail raises only
    when all are refused)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        try:
            return client.sendmail(sender, rcpts, data)
        except smtplib.SMTPRecipientsRefused as refused:
            return {k: (v[0], v[1]) for k, v in refused.recipients.items()}


def rcpt_reply(port: int, rcpt: str) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("peer.test")
        client.mail("")
        return client.rcpt(rcpt)


def postfix_style_dsn(
    to: str,
    *,
    action: str = "failed",
    status: str = "5.1.1",
    message_id: str = "orig-1@example.com",
) -> bytes:
    """A DSN as vmta itself writes one (RFC 3464), for ``alice@dest.test``."""
    dsn = build_dsn(
        reporting_mta="mx.dest.test",
        envelope_sender=to,
        recipients=[
            FailedRecipient(
                address="alice@dest.test",
                reply=f"550 {status} <alice@dest.test>: Recipient address rejected",
                remote_mta="mx.dest.test",
                last_attempt=time.time(),
            )
        ],
        original=f"Message-ID: <{message_id}>\r\nSubject: hi\r\n\r\n".encode(),
        arrival=time.time(),
        now=time.time(),
    )
    if action != "failed":
        dsn = dsn.replace(b"Action: failed", f"Action: {action}".encode())
    return dsn


def rows(store: Store, table: Any) -> list[Any]:
    with store.read() as conn:
        return list(conn.execute(select(table)))


def greenarrow_events(store: Store) -> list[dict[str, Any]]:
    return [dict(r.payload["greenarrow"]) for r in rows(store, events) if r.event_type != "report"]


async def test_rcpt_accepts_only_mailboxes(inbound: Inbound) -> None:
    port = inbound.port
    assert (await asyncio.to_thread(rcpt_reply, port, inbound.verp))[0] == 250
    assert (await asyncio.to_thread(rcpt_reply, port, "return@BOUNCES.test"))[0] == 250
    assert (await asyncio.to_thread(rcpt_reply, port, "fbl@bounces.test"))[0] == 250
    ga_form = "return-list7-send9-bob=dest.test@bounces.test"
    assert (await asyncio.to_thread(rcpt_reply, port, ga_form))[0] == 250
    refused = [
        "someone@bounces.test",  # not a mailbox
        "victim@elsewhere.test",  # never a relay
        "return-" + "a" * 36 + "@bounces.test",  # a token vmta did not write
    ]
    for address in refused:
        code, text = await asyncio.to_thread(rcpt_reply, port, address)
        assert (code, text[:5]) == (550, b"5.7.1"), address
    local = inbound.verp.split("@")[0]
    for i in (10, len(local) - 1):  # a changed token, and its padding bits
        flipped = "b" if local[i] != "b" else "c"
        forged = f"{local[:i]}{flipped}{local[i + 1 :]}@bounces.test"
        code, _ = await asyncio.to_thread(rcpt_reply, port, forged)
        assert code == 550, forged


async def test_email_status_applies_at_rcpt(inbound: Inbound) -> None:
    with inbound.store.write() as conn:
        IncomingDomainRepository(conn).update(inbound.domain_id, "bounces.test", "defer")
    code, text = await asyncio.to_thread(rcpt_reply, inbound.port, inbound.verp)
    assert (code, text[:5]) == (451, b"4.3.2")
    with inbound.store.write() as conn:
        IncomingDomainRepository(conn).update(inbound.domain_id, "bounces.test", "disabled")
    code, text = await asyncio.to_thread(rcpt_reply, inbound.port, inbound.verp)
    assert (code, text[:5]) == (550, b"5.7.1")


async def test_no_auth_offered(inbound: Inbound) -> None:
    def ehlo() -> tuple[bool, int]:
        with smtplib.SMTP("127.0.0.1", inbound.port, timeout=30) as client:
            client.ehlo("peer.test")
            return client.has_extn("auth"), client.docmd("AUTH", "PLAIN AGFhAGI=")[0]

    offered, code = await asyncio.to_thread(ehlo)
    assert not offered and code == 502


async def test_bounce_to_verp_gives_bounce_all(inbound: Inbound) -> None:
    refused = await asyncio.to_thread(
        smtp, inbound.port, "", [inbound.verp], postfix_style_dsn(inbound.verp)
    )
    assert refused == {}
    # Committed before the 250: the message is in the store before any processing.
    assert len(rows(inbound.store, inbound_messages)) == 1
    assert await asyncio.to_thread(inbound.processor.run_once) == 1
    assert rows(inbound.store, inbound_messages) == []
    [bounce, bad] = greenarrow_events(inbound.store)
    assert bounce["event_type"] == "bounce_all"
    # One hard bounce crosses the threshold: bounce_bad_address, and a suppression.
    assert bad["event_type"] == "bounce_bad_address" and bad["email"] == "alice@dest.test"
    [suppressed] = rows(inbound.store, mq_suppressions)
    assert suppressed.value == "alice@dest.test"
    assert bounce["synchronous"] is False
    assert bounce["email"] == "alice@dest.test"
    assert bounce["message_id"] == QUEUE_ID
    assert (bounce["listid"], bounce["sendid"]) == ("list7", "send9")
    assert (bounce["bounce_type"], bounce["bounce_code"]) == ("h", 10)
    assert "5.1.1" in bounce["bounce_text"]
    [report] = rows(inbound.store, feedback_reports)
    assert report.matched and report.queue_id == QUEUE_ID
    # One delivery row per subscribed destination: http for the event, rabbitmq for the
    # parsed report.
    destinations = sorted(r.destination for r in rows(inbound.store, event_deliveries))
    assert destinations == ["http", "http", "rabbitmq"]


async def test_what_gives_no_event(inbound: Inbound) -> None:
    delayed = postfix_style_dsn(inbound.verp, action="delayed", status="4.4.1")
    await asyncio.to_thread(smtp, inbound.port, "", [inbound.verp], delayed)
    vacation = EmailMessage()
    vacation["From"] = "alice@dest.test"
    vacation["Subject"] = "Out of office"
    vacation["Auto-Submitted"] = "auto-replied"
    vacation.set_content("I am away until Monday.")
    await asyncio.to_thread(
        smtp, inbound.port, "alice@dest.test", ["return@bounces.test"], bytes(vacation)
    )
    await asyncio.to_thread(inbound.processor.run_once)
    assert greenarrow_events(inbound.store) == []
    assert rows(inbound.store, feedback_reports) == []
    assert rows(inbound.store, inbound_messages) == []


async def test_bounce_to_plain_address_matches_by_envelope_id(inbound: Inbound) -> None:
    """A DSN with an ENVID (RFC 3461) sent to the mailbox's plain address: the fallback."""
    dsn = postfix_style_dsn("return@bounces.test", message_id="other@example.com").replace(
        b"Reporting-MTA: dns; mx.dest.test",
        f"Reporting-MTA: dns; mx.dest.test\r\nOriginal-Envelope-Id: {QUEUE_ID}".encode(),
    )
    await asyncio.to_thread(smtp, inbound.port, "", ["return@bounces.test"], dsn)
    await asyncio.to_thread(inbound.processor.run_once)
    [bounce, _bad] = greenarrow_events(inbound.store)
    assert bounce["email"] == "alice@dest.test" and bounce["message_id"] == QUEUE_ID


async def test_bounce_to_plain_address_matches_by_message_id(inbound: Inbound) -> None:
    await asyncio.to_thread(
        smtp, inbound.port, "", ["return@bounces.test"], postfix_style_dsn("return@bounces.test")
    )
    await asyncio.to_thread(inbound.processor.run_once)
    [bounce, _bad] = greenarrow_events(inbound.store)
    assert bounce["email"] == "alice@dest.test" and bounce["message_id"] == QUEUE_ID


async def test_unmatched_bounce_is_kept(inbound: Inbound) -> None:
    dsn = postfix_style_dsn("return@bounces.test", message_id="other@example.com")
    await asyncio.to_thread(smtp, inbound.port, "", ["return@bounces.test"], dsn)
    await asyncio.to_thread(inbound.processor.run_once)
    assert greenarrow_events(inbound.store) == []
    [report] = rows(inbound.store, feedback_reports)
    assert not report.matched and report.recipient == "alice@dest.test"


def arf_report(return_path: str) -> bytes:
    """An abuse report built to RFC 5965 §2."""
    return (
        "From: fbl@isp.test\r\nTo: fbl@bounces.test\r\nSubject: FW: hi\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="b1"\r\n\r\n'
        "--b1\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report.\r\n"
        "--b1\r\nContent-Type: message/feedback-report\r\n\r\n"
        "Feedback-Type: abuse\r\nUser-Agent: isp-fbl/1.0\r\nVersion: 1\r\n"
        "Original-Rcpt-To: <alice@dest.test>\r\n\r\n"
        "--b1\r\nContent-Type: message/rfc822\r\n\r\n"
        f"Return-Path: <{return_path}>\r\nMessage-ID: <orig-1@example.com>\r\n"
        "From: news@example.com\r\nSubject: hi\r\n\r\nhello\r\n"
        "--b1--\r\n"
    ).encode()


def jmrp_report(return_path: str) -> bytes:
    """Microsoft's JMRP shape: the reported message attached, its recipient in
    X-HmXmrOriginalRecipient."""
    return (
        "From: staff@hotmail.com\r\nTo: fbl@bounces.test\r\nSubject: complaint about message\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b2"\r\n\r\n'
        "--b2\r\nContent-Type: text/plain\r\n\r\nJunk mail report.\r\n"
        "--b2\r\nContent-Type: message/rfc822\r\n\r\n"
        "X-HmXmrOriginalRecipient: <alice@dest.test>\r\n"
        f"Return-Path: <{return_path}>\r\nMessage-ID: <orig-1@example.com>\r\n"
        "From: news@example.com\r\nSubject: hi\r\n\r\nhello\r\n"
        "--b2--\r\n"
    ).encode()


@pytest.mark.parametrize("build", [arf_report, jmrp_report])
async def test_complaints_give_scomp(inbound: Inbound, build: Any) -> None:
    await asyncio.to_thread(
        smtp, inbound.port, "fbl@isp.test", ["fbl@bounces.test"], build(inbound.verp)
    )
    await asyncio.to_thread(inbound.processor.run_once)
    [scomp] = greenarrow_events(inbound.store)
    assert scomp["event_type"] == "scomp"
    assert scomp["email"] == "alice@dest.test" and scomp["message_id"] == QUEUE_ID
    [suppressed] = rows(inbound.store, mq_suppressions)  # VMTA_SUPPRESS_BAD_ADDRESSES
    assert suppressed.value == "alice@dest.test" and suppressed.description == "spam complaint"


async def test_complaint_by_message_id_without_token(inbound: Inbound) -> None:
    await asyncio.to_thread(
        smtp, inbound.port, "fbl@isp.test", ["fbl@bounces.test"], arf_report("news@example.com")
    )
    await asyncio.to_thread(inbound.processor.run_once)
    [scomp] = greenarrow_events(inbound.store)
    assert scomp["email"] == "alice@dest.test" and scomp["message_id"] == QUEUE_ID


async def test_reports_listed_by_the_api(inbound: Inbound) -> None:
    from fastapi.testclient import TestClient

    from tests.conftest import TEST_SECRET
    from vmta.api.app import create_app
    from vmta.api.ports import ApiPorts

    dsn = postfix_style_dsn("return@bounces.test", message_id="other@example.com")
    await asyncio.to_thread(smtp, inbound.port, "", ["return@bounces.test"], dsn)
    await asyncio.to_thread(smtp, inbound.port, "", [inbound.verp], postfix_style_dsn(inbound.verp))
    await asyncio.to_thread(inbound.processor.run_once)
    with TestClient(create_app(ApiPorts(inbound.store, data_plane=None))) as client:
        client.headers["Authorization"] = f"Bearer {TEST_SECRET}"
        unmatched = client.get("/api/reports", params={"matched": "false"}).json()["reports"]
        assert [r["recipient"] for r in unmatched] == ["alice@dest.test"]
        assert unmatched[0]["matched"] is False and unmatched[0]["kind"] == "bounce"
        assert unmatched[0]["report"]["failure"]["status"] == "5.1.1"
        matched = client.get("/api/reports", params={"matched": "true"}).json()["reports"]
        assert [r["queue_id"] for r in matched] == [QUEUE_ID]
        assert client.get("/api/reports", params={"matched": "maybe"}).status_code == 400


async def test_parsed_report_reaches_the_reports_queue(inbound: Inbound) -> None:
    """The ``report`` event, published by the RabbitMQ destination to a real broker."""
    import uuid

    import aio_pika

    from tests.delivery.test_events_rabbitmq import AMQP_URL, drain
    from vmta.delivery.events.event_amqp import RabbitMqEventDestination
    from vmta.store.event_outbox import PendingEvent

    await asyncio.to_thread(smtp, inbound.port, "", [inbound.verp], postfix_style_dsn(inbound.verp))
    await asyncio.to_thread(inbound.processor.run_once)
    [row] = [r for r in rows(inbound.store, events) if r.event_type == "report"]
    queue = f"vmta-test-reports-{uuid.uuid4().hex[:10]}"
    destination = RabbitMqEventDestination(AMQP_URL, queues={"reports": queue})
    assert "report" in destination.event_types
    await destination.send([PendingEvent(row.id, row.event_type, row.created_at, row.payload)])
    await destination.close()
    broker = await aio_pika.connect(AMQP_URL, timeout=5)
    try:
        [document] = await drain(broker, queue)
        channel = await broker.channel()
        await channel.queue_delete(queue)
    finally:
        await broker.close()
    assert document["type"] == "bounce" and document["matched"] is True
    assert document["envelope"] == "" and document["recipient"] == inbound.verp
    assert document["original"]["queue_id"] == QUEUE_ID
    assert document["original"]["recipient"] == "alice@dest.test"
    assert document["report"]["source"] == "dsn"
    assert document["failure"]["status"] == "5.1.1"


async def test_never_a_relay_from_a_non_loopback_client(store: Store) -> None:
    """A client in another network namespace (10.x.y.2, not loopback) may bring a bounce
    to a mailbox, and may not relay."""
    from tests.peers.netns import namespace

    with store.write() as conn:
        repo = IncomingDomainRepository(conn)
        domain_id = repo.insert("bounces.test", "normal")
        repo.insert_mailbox(Mailbox(0, domain_id, BOUNCE, "return"))
    book = MailboxBook(store, verp_secret(store), max_age=0.0)
    settings = InboundSettings(hostname="in.vmta.test")
    with namespace() as ns:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((ns.host_ip, 0))
        listener = await start_inbound_listener(
            sock, InboundHandler(store, book, settings), settings
        )
        port = sock.getsockname()[1]
        code = (
            "import smtplib\n"
            f"c = smtplib.SMTP('{ns.host_ip}', {port}, timeout=30)\n"
            "c.ehlo('peer.test'); c.mail('')\n"
            "for a in ('victim@elsewhere.test', 'nobody@bounces.test', 'return@bounces.test'):\n"
            "    r = c.rcpt(a); print(r[0], r[1].decode()[:5])\n"
            "c.quit()\n"
        )
        try:
            said = await asyncio.to_thread(ns.python, code)
        finally:
            await listener.stop(1.0)
            sock.close()
    assert said.split("\n")[:3] == ["550 5.7.1", "550 5.7.1", "250 2.1.5"]


def own_dsn(to: str, reporting_mta: str) -> bytes:
    """A DSN as vmta writes one for its own failures (with X-Vmta-Queue-ID)."""
    return build_dsn(
        reporting_mta=reporting_mta,
        envelope_sender=to,
        recipients=[
            FailedRecipient(
                address="alice@dest.test",
                reply="550 5.1.1 no such user",
                remote_mta="mx.dest.test",
                last_attempt=time.time(),
            )
        ],
        original=b"Message-ID: <not-kept@example.com>\r\nSubject: hi\r\n\r\n",
        arrival=time.time(),
        now=time.time(),
        queue_id=QUEUE_ID,
    )


async def test_another_vmtas_dsn_round_trips(inbound: Inbound) -> None:
    """Another vmta's DSN to the plain address: matched by its X-Vmta-Queue-ID."""
    dsn = own_dsn("return@bounces.test", "other-vmta.test")
    await asyncio.to_thread(smtp, inbound.port, "", ["return@bounces.test"], dsn)
    await asyncio.to_thread(inbound.processor.run_once)
    [bounce, _bad] = greenarrow_events(inbound.store)
    assert bounce["email"] == "alice@dest.test" and bounce["message_id"] == QUEUE_ID
    assert bounce["synchronous"] is False


async def test_this_nodes_own_dsn_is_not_counted_twice(inbound: Inbound) -> None:
    inbound.processor.hostname = "in.vmta.test"
    dsn = own_dsn("return@bounces.test", "in.vmta.test")
    await asyncio.to_thread(smtp, inbound.port, "", ["return@bounces.test"], dsn)
    await asyncio.to_thread(inbound.processor.run_once)
    assert greenarrow_events(inbound.store) == []
    assert rows(inbound.store, inbound_messages) == []


async def test_a_status_change_applies_within_the_book_age(store: Store) -> None:
    """The listener's view of the mailboxes is at most MAX_AGE (2 s) old: a change made
    through the API applies within it (the contract's bound is 5 s)."""
    from vmta.feedback.directory import MAX_AGE

    with store.write() as conn:
        repo = IncomingDomainRepository(conn)
        domain_id = repo.insert("bounces.test", "normal")
        repo.insert_mailbox(Mailbox(0, domain_id, BOUNCE, "return"))
    clock = [100.0]
    book = MailboxBook(store, verp_secret(store), now=lambda: clock[0])
    first = await book.lookup("return@bounces.test")
    assert first is not None and first.domain_status == "normal"
    with store.write() as conn:
        IncomingDomainRepository(conn).update(domain_id, "bounces.test", "defer")
    clock[0] += MAX_AGE - 0.1
    cached = await book.lookup("return@bounces.test")
    assert cached is not None and cached.domain_status == "normal"  # the snapshot
    clock[0] += 0.1
    fresh = await book.lookup("return@bounces.test")
    assert fresh is not None and fresh.domain_status == "defer"
    assert MAX_AGE < 5


async def test_greenarrow_verp_form_gives_its_recipient_and_ids(inbound: Inbound) -> None:
    address = "return-List7-Send9-carol=dest.test@bounces.test"
    dsn = postfix_style_dsn(address, message_id="other@example.com").replace(
        b"alice@dest.test", b"carol@dest.test"
    )
    await asyncio.to_thread(smtp, inbound.port, "", [address], dsn)
    await asyncio.to_thread(inbound.processor.run_once)
    bounce = greenarrow_events(inbound.store)[0]
    assert bounce["event_type"] == "bounce_all" and bounce["email"] == "carol@dest.test"
    assert (bounce["listid"], bounce["sendid"]) == ("list7", "send9")
    assert bounce["message_id"] is None


async def test_old_reports_are_purged_after_30_days(inbound: Inbound) -> None:
    from vmta.store.inbound_mail import REPORT_RETENTION, purge_reports

    dsn = postfix_style_dsn("return@bounces.test", message_id="other@example.com")
    await asyncio.to_thread(smtp, inbound.port, "", ["return@bounces.test"], dsn)
    await asyncio.to_thread(inbound.processor.run_once)
    [report] = rows(inbound.store, feedback_reports)
    assert purge_reports(inbound.store, report.received_at + REPORT_RETENTION - 1) == 0
    assert purge_reports(inbound.store, report.received_at + REPORT_RETENTION + 1) == 1
    assert rows(inbound.store, feedback_reports) == []


async def test_hardened_like_injection(store: Store) -> None:
    """The injection listener's session caps and line limits hold here too."""
    from vmta.smtp.session_registry import SessionCaps

    book = MailboxBook(store, verp_secret(store), max_age=0.0)
    settings = InboundSettings(
        hostname="in.vmta.test", max_message_size=1000, caps=SessionCaps(max_sessions=1)
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    listener = await start_inbound_listener(sock, InboundHandler(store, book, settings), settings)
    port = sock.getsockname()[1]

    def sessions() -> tuple[bytes, int, int]:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as first:
            first.ehlo("peer.test")
            with socket.create_connection(("127.0.0.1", port), timeout=30) as second:
                refused = second.recv(200)
            long_line = first.docmd("RCPT", "TO:<" + "a" * 600 + "@bounces.test>")[0]
            size = first.docmd("MAIL", "FROM:<> SIZE=5000")[0]
            return refused, long_line, size

    try:
        refused, long_line, size = await asyncio.to_thread(sessions)
    finally:
        await listener.stop(1.0)
        sock.close()
    assert refused.startswith(b"421 4.7.0")
    assert long_line == 500  # RFC 5321 §4.5.3.1.4: the command line is too long
    assert size == 552  # the message size limit, announced and enforced
