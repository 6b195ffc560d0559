"""Relay servers carry mail as configured (data-plane issue), asserted on what a real SMTP
sink observed. Every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import smtplib
import ssl
import time
from dataclasses import replace
from typing import Any

import pytest

from tests.delivery.conftest import FAST, SUBMIT_LOGIN, RunningPlane, eventually
from tests.peers.sink import RecordingSink, TlsFiles
from vmta.domain.config.virtual_mta import Limits
from vmta.domain.message.message_headers import split_headers
from vmta.store.virtual_mtas import VirtualMtaRepository

MESSAGE = (
    "X-GreenArrow-MtaID: relay-1\r\n"
    "From: sender@src.test\r\n"
    "To: rcpt@dest.test\r\n"
    "Subject: hello\r\n"
    "\r\n"
    "first line\r\n"
    ".a line that starts with a dot\r\n"
    "last line\r\n"
)
DELIVERED_BODY = (
    b"From: sender@src.test\r\nTo: rcpt@dest.test\r\nSubject: hello\r\n\r\n"
    b"first line\r\n.a line that starts with a dot\r\nlast line\r\n"
)


def split_received(data: bytes) -> tuple[bytes, bytes]:
    """The Received field vmta added, and the rest of the message."""
    assert data.startswith(b"Received: from "), data[:80]
    received = split_headers(data).headers[0]  # the field with its continuation lines
    return received, data[len(received) :]


async def test_relay_server_fields_reach_the_sink(
    plane: RunningPlane, sink_factory: Any, tls_files: TlsFiles
) -> None:
    sink: RecordingSink = sink_factory(tls=tls_files, credentials=("relay-user", "relay-pass"))
    plane.add_relay("relay-1", sink.port, username="relay-user", password="relay-pass")
    queue_id = await plane.asend(MESSAGE)

    seen = (await eventually(lambda: sink.messages, what="delivery"))[0]
    connection = sink.connections[0]
    assert connection.peer_ip == "127.0.0.2"  # the relay's source_ip.ip, bound
    assert connection.ehlo_name == "out.vmta.test"  # source_ip.hostname
    assert connection.tls is True  # STARTTLS was offered, so it was used
    assert connection.auth_identity == "relay-user"
    assert seen.mail_from == "sender@src.test" and seen.rcpt_tos == ["rcpt@dest.test"]
    received, rest = split_received(seen.data)
    assert rest == DELIVERED_BODY  # unchanged but for the removed selector header
    assert f"id {queue_id}".encode() in received and b"by vmta.test" in received

    view = await eventually(
        lambda: (m := plane.message(queue_id)) and m.recipients[0]["state"] == "delivered" and m
    )
    assert view.vmta_selector == "relay-1"
    attempt = view.attempts[0]
    assert attempt["outcome"] == "delivered" and attempt["source_ip"] == "127.0.0.2"
    assert attempt["remote_host"] == "127.0.0.1" and attempt["virtual_mta"] == "relay-1"
    assert attempt["reply"].startswith("250")


async def test_no_auth_without_both_username_and_password(
    plane: RunningPlane, sink_factory: Any
) -> None:
    sink: RecordingSink = sink_factory(credentials=("u", "p"))
    plane.add_relay("relay-1", sink.port, username="u", password=None)
    await plane.asend(MESSAGE)
    await eventually(lambda: sink.messages, what="delivery")
    assert sink.connections[0].auth_identity is None


async def test_connection_limit_is_never_exceeded(plane: RunningPlane, sink: RecordingSink) -> None:
    plane.add_relay("relay-1", sink.port, throttle_limits=Limits(2, 0))

    def inject(start: int) -> None:
        with smtplib.SMTP("127.0.0.1", plane.smtp_port, timeout=30) as client:
            for i in range(start, start + 125):
                client.sendmail(
                    "s@src.test",
                    ["r@dest.test"],
                    f"X-GreenArrow-MtaID: relay-1\r\nSubject: {i}\r\n\r\nbody {i}\r\n",
                )

    await asyncio.gather(*(asyncio.to_thread(inject, k * 125) for k in range(4)))
    await eventually(lambda: len(sink.messages) >= 500, timeout=60, what="500 deliveries")
    subjects = {t.data.split(b"Subject: ")[1].split(b"\r\n")[0] for t in sink.messages}
    assert len(subjects) == 500 and len(sink.messages) == 500
    assert sink.max_concurrent <= 2
    assert all(c.peer_ip == "127.0.0.2" for c in sink.connections)


async def test_messages_per_hour_are_paced_in_real_time(
    plane: RunningPlane, sink: RecordingSink
) -> None:
    # 3,600 an hour is one a second: the sink must never see two within much less.
    plane.add_relay("relay-1", sink.port, throttle_limits=Limits(0, 3600))
    for _ in range(4):
        await plane.asend(MESSAGE)
    arrivals: list[float] = []

    def progress() -> bool:
        while len(arrivals) < len(sink.messages):
            arrivals.append(time.monotonic())
        return len(arrivals) >= 4

    await eventually(progress, timeout=20, what="4 paced deliveries")
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert all(gap >= 0.9 for gap in gaps), gaps


async def test_temporary_failure_is_retried(plane: RunningPlane, sink: RecordingSink) -> None:
    plane.add_relay("relay-1", sink.port)
    sink.script("RCPT", "451 4.7.1 Greylisted, try again later")
    queue_id = await plane.asend(MESSAGE)
    await eventually(lambda: sink.messages, what="delivery on retry")
    view = await eventually(
        lambda: (m := plane.message(queue_id)) and m.recipients[0]["state"] == "delivered" and m
    )
    assert [a["outcome"] for a in view.attempts] == ["deferred", "delivered"]
    assert view.attempts[0]["reply"].startswith("451 4.7.1")
    assert view.recipients[0]["attempts"] == 2


async def test_permanent_failure_fails_only_that_recipient(
    plane: RunningPlane, sink: RecordingSink
) -> None:
    plane.add_relay("relay-1", sink.port)
    sink.refuse("nobody@dest.test")
    queue_id = await plane.asend(MESSAGE, ["rcpt@dest.test", "nobody@dest.test"])
    view = await eventually(
        lambda: (
            (m := plane.message(queue_id))
            and all(r["state"] != "queued" for r in m.recipients)
            and m
        )
    )
    states = {r["address"]: r["state"] for r in view.recipients}
    assert states == {"rcpt@dest.test": "delivered", "nobody@dest.test": "failed"}
    assert sink.messages[0].rcpt_tos == ["rcpt@dest.test"]
    failed = next(r for r in view.recipients if r["address"] == "nobody@dest.test")
    assert failed["last_reply"].startswith("550")


async def test_a_sink_that_is_down_defers_then_gets_the_mail(
    plane: RunningPlane, sink_factory: Any
) -> None:
    probe: RecordingSink = sink_factory()
    port = probe.port
    probe.stop()  # nothing listens on the port now
    plane.add_relay("relay-1", port)
    queue_id = await plane.asend(MESSAGE)
    view = await eventually(
        lambda: (m := plane.message(queue_id)) and m.attempts and m, what="a deferral"
    )
    assert view.attempts[0]["outcome"] == "deferred"
    assert view.recipients[0]["state"] == "queued"
    assert "refused" in view.attempts[0]["reply"].lower()
    sink: RecordingSink = sink_factory(port=port)
    await eventually(lambda: sink.messages, timeout=30, what="delivery once the sink is up")
    await eventually(
        lambda: plane.message(queue_id).recipients[0]["state"] == "delivered", what="record"
    )


async def test_selector_by_id_and_unknown_selector_uses_the_default(
    plane: RunningPlane, sink_factory: Any
) -> None:
    first: RecordingSink = sink_factory()
    second: RecordingSink = sink_factory()
    relay_id = plane.add_relay("relay-1", first.port)
    plane.add_relay("fallback", second.port)
    plane.set_default("fallback")
    await plane.asend(f"X-GreenArrow-MtaID: {relay_id}\r\nSubject: a\r\n\r\nx\r\n")
    await plane.asend("X-GreenArrow-MtaID: does-not-exist\r\nSubject: b\r\n\r\nx\r\n")
    await eventually(lambda: first.messages and second.messages, what="both deliveries")
    assert b"Subject: a" in first.messages[0].data and b"Subject: b" in second.messages[0].data
    assert b"X-GreenArrow-MtaID" not in first.messages[0].data + second.messages[0].data


@pytest.mark.parametrize("honour", [True, False])
async def test_x_virtual_mta_header(plane_factory: Any, sink_factory: Any, honour: bool) -> None:
    running: RunningPlane = await plane_factory(honour_x_virtual_mta=honour)
    greenarrow: RecordingSink = sink_factory()
    powermta: RecordingSink = sink_factory()
    running.add_relay("ga", greenarrow.port)
    running.add_relay("pmta", powermta.port)
    await running.asend("X-GreenArrow-MtaID: ga\r\nX-Virtual-MTA: pmta\r\nSubject: s\r\n\r\nx\r\n")
    winner, loser = (powermta, greenarrow) if honour else (greenarrow, powermta)
    seen = (await eventually(lambda: winner.messages, what="delivery"))[0]
    assert loser.messages == []
    assert b"X-Virtual-MTA" not in seen.data and b"X-GreenArrow-MtaID" not in seen.data


async def test_a_configuration_change_applies_to_the_next_message(
    plane: RunningPlane, sink_factory: Any
) -> None:
    old: RecordingSink = sink_factory()
    new: RecordingSink = sink_factory(host="127.0.0.1")
    relay_id = plane.add_relay("relay-1", old.port)
    await plane.asend(MESSAGE)
    await eventually(lambda: old.messages, what="first delivery")
    with plane.store.write() as conn:
        repo = VirtualMtaRepository(conn)
        relay = repo.get(relay_id)
        assert relay is not None
        relay.destination_port = new.port  # type: ignore[union-attr]
        relay.source_hostname = "renamed.vmta.test"  # type: ignore[union-attr]
        repo.update(relay_id, repo.prepare(relay, own_id=relay_id))
    await asyncio.sleep(1.1)  # the engine's view of the configuration lives one second
    await plane.asend(MESSAGE)
    await eventually(lambda: new.messages, what="delivery to the new destination")
    assert new.connections[0].ehlo_name == "renamed.vmta.test"
    assert len(old.messages) == 1


async def test_delivery_log_has_one_json_line_per_attempt(
    plane: RunningPlane, sink: RecordingSink
) -> None:
    plane.add_relay("relay-1", sink.port)
    sink.script("RCPT", "451 4.3.0 later")
    queue_id = await plane.asend(MESSAGE)
    await eventually(lambda: sink.messages, what="delivery")
    log_path = plane.plane.delivery_log_path

    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in log_path.read_text().splitlines() if line]

    records = await eventually(lambda: len(lines()) >= 2 and lines(), what="two log lines")
    assert [r["outcome"] for r in records] == ["deferred", "delivered"]
    assert all(r["queue_id"] == queue_id and r["source_ip"] == "127.0.0.2" for r in records)
    assert records[0]["reply"].startswith("451")
    # ISO 8601 in UTC, to the millisecond.
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r["time"]) for r in records)


async def test_injection_auth_uses_submit_credentials(
    plane: RunningPlane, sink: RecordingSink
) -> None:
    plane.add_relay("relay-1", sink.port)

    def probe() -> None:
        # The client runs in a thread: the data plane runs on this test's event loop.
        # Loopback clients are offered AUTH even without TLS (nothing leaves the host).
        with smtplib.SMTP("127.0.0.1", plane.smtp_port, timeout=10) as client:
            client.ehlo()
            assert "auth" in client.esmtp_features
            assert "pipelining" in client.esmtp_features and "size" in client.esmtp_features
            with pytest.raises(smtplib.SMTPAuthenticationError):
                client.login("submitter", "wrong")

    await asyncio.to_thread(probe)
    await asyncio.to_thread(plane.send, MESSAGE, login=SUBMIT_LOGIN)
    seen = (await eventually(lambda: sink.messages, what="delivery"))[0]
    assert b"with ESMTPA id" in split_received(seen.data)[0]


async def test_oversized_message_is_refused_at_mail(plane_factory: Any) -> None:
    running: RunningPlane = await plane_factory(max_message_size=2048)

    def probe() -> int:
        with smtplib.SMTP("127.0.0.1", running.smtp_port, timeout=10) as client:
            client.ehlo()
            code, _ = client.mail("s@src.test", ["SIZE=4096"])
            return code

    assert await asyncio.to_thread(probe) == 552


async def test_injection_offers_starttls_with_a_certificate(
    plane_factory: Any, sink: RecordingSink, tls_files: TlsFiles
) -> None:
    running: RunningPlane = await plane_factory(tls_cert=tls_files.cert, tls_key=tls_files.key)
    running.add_relay("relay-1", sink.port)

    def probe() -> None:
        context = ssl.create_default_context(cafile=str(tls_files.cert))
        context.check_hostname = False
        with smtplib.SMTP("127.0.0.1", running.smtp_port, timeout=10) as client:
            client.ehlo()
            assert client.has_extn("starttls")
            client.starttls(context=context)
            client.ehlo()
            client.sendmail("s@src.test", ["r@dest.test"], MESSAGE)

    await asyncio.to_thread(probe)
    seen = (await eventually(lambda: sink.messages, what="delivery"))[0]
    assert b"with ESMTPS id" in split_received(seen.data)[0]


async def test_finished_messages_are_purged_after_their_retention(
    plane_factory: Any, sink: RecordingSink
) -> None:
    engine = replace(FAST, finished_retention=0.5, purge_interval=0.2)
    running: RunningPlane = await plane_factory(engine=engine)
    running.add_relay("relay-1", sink.port)
    queue_id = await running.asend(MESSAGE)
    await eventually(lambda: sink.messages, what="delivery")
    await eventually(lambda: running.message(queue_id) is None, what="the purge")
