"""MailerQ's delivery controls and sending-IP choice at work, observed at real sinks (and
through a real microsocks): pauses hold without connecting, forced errors defer or fail,
suppressions fail at once, x-mq-ip / x-mq-pool choose the sending IP and are removed.
SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import smtplib
from typing import Any

import pytest

from tests.delivery.conftest import ExternalProxy, RunningPlane, eventually, insert, ip_vmta
from tests.delivery.test_external_mta_delivery import PUBLIC_IP, add_external
from tests.peers.sink import RecordingSink
from vmta.domain.config.external_mta import ExternalMtaProtocol
from vmta.domain.config.ip_pool import IpPool
from vmta.domain.paths.delivery_controls import ForcedError, Pause, matcher
from vmta.domain.paths.suppression import Suppression, SuppressionType
from vmta.store.delivery_controls import ForcedErrorRepository, PauseRepository
from vmta.store.ip_pools import IpPoolRepository
from vmta.store.suppressions import SuppressionRepository

pytestmark = pytest.mark.peers


def mail(*headers: str, subject: str = "hello") -> str:
    head = "".join(f"{h}\r\n" for h in headers)
    return f"{head}From: sender@src.test\r\nSubject: {subject}\r\n\r\nbody\r\n"


def changed(plane: RunningPlane) -> None:
    plane.plane.config.invalidate()
    plane.plane.engine.wake()


def recipient(plane: RunningPlane, queue_id: str) -> Any:
    view = plane.message(queue_id)
    return view.recipients[0] if view and view.recipients else None


async def test_a_pause_holds_without_connecting_until_it_is_removed(world: Any) -> None:
    plane, sinks = world
    with plane.store.write() as conn:
        PauseRepository(conn).put(Pause(matcher(domain="c.test")))
    changed(plane)
    queue_id = await plane.asend(mail(), ["user@c.test"])
    held = await eventually(
        lambda: (r := recipient(plane, queue_id)) and r["waiting_reason"], what="the hold"
    )
    assert "Paused (domain c.test)" in held
    sink: RecordingSink = sinks["127.0.0.23"]
    assert sink.connections == []  # decided before any connection: none was made
    assert plane.message(queue_id).attempts == []  # a hold is not an attempt

    with plane.store.write() as conn:
        PauseRepository(conn).remove(matcher(domain="c.test"))
    changed(plane)
    await eventually(lambda: sink.messages, what="delivery once the pause is gone")
    await eventually(
        lambda: recipient(plane, queue_id)["state"] == "delivered", what="the delivered state"
    )


async def test_a_pause_on_one_mx_address_sends_to_the_next(world: Any) -> None:
    plane, sinks = world
    with plane.store.write() as conn:
        PauseRepository(conn).put(Pause(matcher(ip="127.0.0.20")))
    changed(plane)
    await plane.asend(mail(), ["user@a.test"])
    await eventually(lambda: sinks["127.0.0.21"].messages, what="delivery to mx2")
    assert sinks["127.0.0.20"].connections == []


@pytest.mark.parametrize(
    ("code", "state", "outcome"), [(421, "queued", "deferred"), (550, "failed", "failed")]
)
async def test_a_forced_error_ends_the_attempt_with_its_code(
    world: Any, code: int, state: str, outcome: str
) -> None:
    plane, sinks = world
    extended = f"{str(code)[0]}.7.1"
    with plane.store.write() as conn:
        ForcedErrorRepository(conn).put(
            ForcedError(matcher(domain="c.test"), code, extended, "forced by the operator")
        )
    changed(plane)
    queue_id = await plane.asend(mail(), ["user@c.test"])
    view = await eventually(
        lambda: (m := plane.message(queue_id)) and m.attempts and m, what="the attempt"
    )
    attempt = view.attempts[0]
    assert attempt["outcome"] == outcome
    assert attempt["reply"].startswith(f"{code} {extended} forced by the operator")
    assert view.recipients[0]["state"] == state
    assert sinks["127.0.0.23"].connections == []


async def test_a_suppressed_recipient_fails_at_once_and_others_are_delivered(
    world: Any,
) -> None:
    plane, sinks = world
    with plane.store.write() as conn:
        SuppressionRepository(conn).put(
            Suppression("Trap@C.test", SuppressionType.ADDRESS, 551, "5.1.1", "Spamtrap")
        )
    changed(plane)
    queue_id = await plane.asend(mail(), ["trap@c.test", "friend@c.test"])
    sink: RecordingSink = sinks["127.0.0.23"]
    await eventually(lambda: sink.messages, what="the other recipient's delivery")
    view = await eventually(
        lambda: (m := plane.message(queue_id)) and len(m.attempts) == 2 and m, what="outcomes"
    )
    by_address = {r["address"]: r for r in view.recipients}
    assert by_address["trap@c.test"]["state"] == "failed"
    assert by_address["trap@c.test"]["last_reply"].startswith("551 5.1.1 Spamtrap")
    assert [t.rcpt_tos for t in sink.messages] == [["friend@c.test"]]


async def test_x_mq_ip_naming_an_external_mta_goes_through_its_proxy(
    world: Any, external_proxy: ExternalProxy
) -> None:
    plane, sinks = world
    protocol = ExternalMtaProtocol(external_proxy.protocol)
    add_external(plane, protocol, connect_port=external_proxy.port)
    insert(plane, ip_vmta("ext-ip", ip=PUBLIC_IP))  # its hostname is the EHLO name
    queue_id = await plane.asend(
        mail(f"x-mq-ip: {PUBLIC_IP}", "X-MQ-Tag: campaign-7", "x-mq-custom: kept"),
        ["user@c.test"],
    )
    sink: RecordingSink = sinks["127.0.0.23"]
    await eventually(lambda: sink.messages, what="delivery through the proxy")
    connection = sink.connections[0]
    assert connection.peer_ip == external_proxy.egress_ip
    assert connection.ehlo_name == "ext-ip.vmta.test"
    data = sink.messages[0].data.lower()
    assert b"x-mq-" not in data and b"subject: hello" in data
    view = await eventually(lambda: (m := plane.message(queue_id)) and m.attempts and m)
    assert view.attempts[0]["source_ip"] == PUBLIC_IP


async def test_x_mq_pool_uses_the_current_members(world: Any) -> None:
    plane, sinks = world
    with plane.store.write() as conn:
        pools = IpPoolRepository(conn)
        pools.put(IpPool("warm"))
        pools.add_member("warm", "127.0.0.2")
    changed(plane)
    sink: RecordingSink = sinks["127.0.0.23"]
    await plane.asend(mail("x-mq-pool: warm", subject="one"), ["user@c.test"])
    await eventually(lambda: sink.messages, what="first delivery")
    assert sink.connections[0].peer_ip == "127.0.0.2"
    assert sink.connections[0].ehlo_name == "vmta.test"  # no IP address VirtualMTA for it

    with plane.store.write() as conn:
        pools = IpPoolRepository(conn)
        pools.add_member("warm", "127.0.0.3")
        pools.remove_member("warm", "127.0.0.2")
    changed(plane)
    await plane.asend(mail("x-mq-pool: warm", subject="two"), ["user@c.test"])
    await eventually(lambda: len(sink.messages) == 2, what="second delivery")
    assert [c.peer_ip for c in sink.connections if c.transactions][-1] == "127.0.0.3"


async def test_a_pool_pause_holds_mail_of_its_members(world: Any) -> None:
    plane, sinks = world
    with plane.store.write() as conn:
        IpPoolRepository(conn).put(IpPool("shared"))
        IpPoolRepository(conn).add_member("shared", "127.0.0.2")
        PauseRepository(conn).put(Pause(matcher(pool="shared", tag="t1")))
    changed(plane)
    held = await plane.asend(mail("x-mq-ip: 127.0.0.2", "x-mq-tag: t1"), ["a@c.test"])
    free = await plane.asend(mail("x-mq-ip: 127.0.0.2", "x-mq-tag: t2"), ["b@c.test"])
    sink: RecordingSink = sinks["127.0.0.23"]
    await eventually(lambda: sink.messages, what="the untagged message")
    await eventually(lambda: (r := recipient(plane, held)) and r["waiting_reason"])
    await eventually(lambda: recipient(plane, free)["state"] == "delivered")
    assert [t.rcpt_tos for t in sink.messages] == [["b@c.test"]]


async def test_bad_x_mq_header_is_refused_at_data_and_nothing_is_queued(
    plane: RunningPlane,
) -> None:
    def send() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", plane.smtp_port, timeout=30) as client:
            client.ehlo()
            client.mail("sender@src.test")
            client.rcpt("user@c.test")
            return client.data(mail("x-mq-maxattempts: many").encode())

    code, reply = await asyncio.to_thread(send)
    assert code == 554
    assert reply.startswith(b"5.6.0 Bad x-mq-* header: maxattempts must be")
    assert plane.plane.spool.inspector.list_messages(None, 10) == []


async def test_controls_apply_to_greenarrow_mail_too(world: Any) -> None:
    """A forced error naming an IP address VirtualMTA's ip fails mail that chose that
    VirtualMTA by X-GreenArrow-MtaID; a pause on another ip leaves it alone."""
    plane, sinks = world
    insert(plane, ip_vmta("ga-ip", ip="127.0.0.2"))
    with plane.store.write() as conn:
        ForcedErrorRepository(conn).put(ForcedError(matcher(mta="127.0.0.2"), 550, "5.7.1"))
        PauseRepository(conn).put(Pause(matcher(mta="127.0.0.3")))
    changed(plane)
    queue_id = await plane.asend(mail("X-GreenArrow-MtaID: ga-ip"), ["user@c.test"])
    view = await eventually(
        lambda: (m := plane.message(queue_id)) and m.attempts and m, what="the attempt"
    )
    assert view.attempts[0]["outcome"] == "failed"
    assert view.attempts[0]["reply"].startswith("550 5.7.1")
    assert view.attempts[0]["virtual_mta"] == "ga-ip"
    assert sinks["127.0.0.23"].connections == []


async def test_x_greenarrow_mtaid_wins_over_x_mq_ip(world: Any) -> None:
    plane, sinks = world
    insert(plane, ip_vmta("ga-ip", ip="127.0.0.2"))
    await plane.asend(mail("x-mq-ip: 127.0.0.3", "X-GreenArrow-MtaID: ga-ip"), ["u@c.test"])
    sink: RecordingSink = sinks["127.0.0.23"]
    await eventually(lambda: sink.messages, what="the delivery")
    assert sink.connections[0].peer_ip == "127.0.0.2"
    assert sink.connections[0].ehlo_name == "ga-ip.vmta.test"
    data = sink.messages[0].data.lower()
    assert b"x-mq-" not in data and b"x-greenarrow-" not in data


async def test_x_mq_delayed_holds_the_first_attempt_until_its_time(world: Any) -> None:
    plane, sinks = world
    queue_id = await plane.asend(mail("x-mq-delayed: 2"), ["u@c.test"])  # 2 s after arrival
    reason = await eventually(
        lambda: (r := recipient(plane, queue_id)) and r["waiting_reason"], what="the hold"
    )
    assert reason == "Waiting for the message's nextattempt time."
    sink: RecordingSink = sinks["127.0.0.23"]
    await eventually(lambda: sink.messages, what="the delivery at its time")
    view = await eventually(lambda: (m := plane.message(queue_id)) and m.attempts and m)
    assert view.attempts[0]["at"] >= view.received_at + 2
