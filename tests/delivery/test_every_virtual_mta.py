"""Every VirtualMTA type carries mail (issue 5): IP addresses to MX hosts published by a
real DNS server (dnsmasq), throttling templates, redirects, routing rules, pauses, direct
delivery without a VirtualMTA, and bounces. Observed at real sinks; SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from email import message_from_bytes
from typing import Any

import pytest

from tests.delivery.conftest import (
    FAST,
    eventually,
    insert,
    ip_vmta,
    message,
    rule,
    update,
)
from vmta.domain.attempts.spool_records import Job
from vmta.domain.config.virtual_mta import (
    Limits,
    RandomizationType,
    Ref,
    ThrottleRule,
    ThrottlingTemplate,
)
from vmta.store.throttling_templates import ThrottlingTemplateRepository

pytestmark = pytest.mark.peers


async def test_ip_address_delivers_to_the_preferred_mx_then_the_next(world: Any) -> None:
    plane, sinks = world
    insert(plane, ip_vmta("ip-1"))
    await plane.asend(message("ip-1"), ["user@a.test"])
    first = sinks["127.0.0.20"]
    await eventually(lambda: first.messages, what="delivery to mx1.a.test")
    assert first.connections[0].peer_ip == "127.0.0.2"
    assert first.connections[0].ehlo_name == "ip-1.vmta.test"
    assert sinks["127.0.0.21"].messages == []

    first.stop()  # mx1 now refuses connections: the next MX gets the mail
    queue_id = await plane.asend(message("ip-1", "second"), ["user@a.test"])
    second = sinks["127.0.0.21"]
    await eventually(lambda: second.messages, what="delivery to mx2.a.test")
    assert b"Subject: second" in second.messages[0].data
    view = await eventually(
        lambda: (m := plane.message(queue_id)) and m.attempts and m, what="attempt record"
    )
    assert view.attempts[0]["remote_ip"] == "127.0.0.21"
    assert view.attempts[0]["remote_host"] == "mx2.a.test"


async def test_domain_without_mx_uses_its_address(world: Any) -> None:
    plane, sinks = world
    insert(plane, ip_vmta("ip-1"))
    await plane.asend(message("ip-1"), ["user@nomx.test"])
    await eventually(lambda: sinks["127.0.0.24"].messages, what="implicit MX delivery")


async def test_null_mx_fails_the_recipient_and_bounces_to_the_sender(world: Any) -> None:
    plane, sinks = world
    insert(plane, ip_vmta("ip-1"))
    queue_id = await plane.asend(message("ip-1"), ["user@nullmx.test"], sender="sender@src.test")
    view = await eventually(
        lambda: (m := plane.message(queue_id)) and m.recipients[0]["state"] == "failed" and m,
        what="permanent failure",
    )
    assert "null MX" in view.recipients[0]["last_reply"]
    bounce = (await eventually(lambda: sinks["127.0.0.22"].messages, what="the bounce"))[0]
    # The sink (aiosmtpd) writes the null reverse-path as "<>".
    assert bounce.mail_from == "<>" and bounce.rcpt_tos == ["sender@src.test"]
    report = message_from_bytes(bounce.data)
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    status = report.get_payload()[1]
    assert status.get_content_type() == "message/delivery-status"
    text = status.as_string()
    assert "Final-Recipient: rfc822; user@nullmx.test" in text and "Action: failed" in text


async def test_throttling_template_limits_connections_per_matching_domains(
    world: Any, sink_factory: Any
) -> None:
    plane, sinks = world
    with plane.store.write() as conn:
        template_id = ThrottlingTemplateRepository(conn).insert(
            ThrottlingTemplate(
                name="tmpl",
                default=Limits(3, 0),
                rules=[ThrottleRule(domains=["[*.]a.test"], limits=Limits(1, 0))],
            )
        )
    insert(plane, ip_vmta("ip-1", throttling_template=Ref(id=template_id)))
    batch = [("user@a.test", i) for i in range(30)] + [("user@b.a.test", i) for i in range(30)]
    batch += [("user@c.test", i) for i in range(60)]

    async def send(rcpt: str, i: int) -> None:
        await plane.asend(message("ip-1", f"{rcpt}-{i}"), [rcpt])

    await asyncio.gather(*(send(r, i) for r, i in batch))
    a_sink, c_sink = sinks["127.0.0.20"], sinks["127.0.0.23"]
    await eventually(
        lambda: len(a_sink.messages) == 60 and len(c_sink.messages) == 60,
        timeout=60,
        what="120 deliveries",
    )
    # a.test and b.a.test share mx1 (127.0.0.20) and one [*.]a.test limit of 1.
    assert a_sink.max_concurrent == 1
    assert c_sink.max_concurrent <= 3


async def test_weights_split_mail_one_to_three(world: Any) -> None:
    plane, _ = world
    insert(plane, ip_vmta("ip-a", ip="127.0.0.2"))
    insert(plane, ip_vmta("ip-b", ip="127.0.0.3"))
    insert(plane, rule("rr", RandomizationType.RANDOM, ("ip-a", 1), ("ip-b", 3)))
    router = plane.plane.engine.router
    counts: Counter[str] = Counter()
    for i in range(4000):
        decision = await router.decide(job(i, "rr", f"user{i}@a.test"))
        counts[decision.effective] += 1  # type: ignore[union-attr]
    share = counts["ip-a"] / 4000
    assert abs(share - 0.25) <= 0.02, counts


async def test_weights_split_real_mail(world: Any) -> None:
    plane, sinks = world
    insert(plane, ip_vmta("ip-a", ip="127.0.0.2"))
    insert(plane, ip_vmta("ip-b", ip="127.0.0.3"))
    insert(plane, rule("rr", RandomizationType.RANDOM, ("ip-a", 1), ("ip-b", 3)))
    await asyncio.gather(*(plane.asend(message("rr", str(i)), ["u@c.test"]) for i in range(200)))
    sink = sinks["127.0.0.23"]
    await eventually(lambda: len(sink.messages) == 200, timeout=60, what="200 deliveries")
    by_source = Counter(c.peer_ip for c in sink.connections for _ in c.transactions)
    assert set(by_source) == {"127.0.0.2", "127.0.0.3"}
    assert by_source["127.0.0.3"] > by_source["127.0.0.2"]


async def test_message_constant_retries_through_the_same_path(world: Any) -> None:
    plane, sinks = world
    insert(plane, ip_vmta("ip-a", ip="127.0.0.2"))
    insert(plane, ip_vmta("ip-b", ip="127.0.0.3"))
    insert(plane, rule("rr", RandomizationType.MESSAGE_CONSTANT, ("ip-a", 1), ("ip-b", 1)))
    sink = sinks["127.0.0.23"]
    sink.script("RCPT", *(["451 4.7.1 later"] * 3))
    queue_id = await plane.asend(message("rr"), ["u@c.test"])
    view = await eventually(
        lambda: (m := plane.message(queue_id)) and m.recipients[0]["state"] == "delivered" and m,
        timeout=30,
        what="delivery after three deferrals",
    )
    assert [a["outcome"] for a in view.attempts] == ["deferred"] * 3 + ["delivered"]
    paths = {a["effective_virtual_mta"] for a in view.attempts}
    sources = {a["source_ip"] for a in view.attempts}
    assert len(paths) == 1 and len(sources) == 1, view.attempts


async def test_email_address_constant_keeps_one_path_per_address(world: Any) -> None:
    plane, _ = world
    insert(plane, ip_vmta("ip-a", ip="127.0.0.2"))
    insert(plane, ip_vmta("ip-b", ip="127.0.0.3"))
    insert(plane, rule("rr", RandomizationType.EMAIL_ADDRESS_CONSTANT, ("ip-a", 1), ("ip-b", 1)))
    router = plane.plane.engine.router
    for address in ("one@a.test", "Two@a.test", "three@c.test"):
        chosen = {
            (await router.decide(job(i, "rr", address))).effective  # type: ignore[union-attr]
            for i in range(50)
        }
        assert len(chosen) == 1, (address, chosen)


async def test_paused_ip_with_redirect_defers_until_unpaused(world: Any) -> None:
    plane, sinks = world
    target = insert(plane, ip_vmta("ip-b", ip="127.0.0.3"))
    paused = insert(
        plane, ip_vmta("ip-a", ip="127.0.0.2", delivery_paused=True, redirect=Ref(id=target))
    )
    queue_id = await plane.asend(message("ip-a"), ["u@c.test"])
    view = await eventually(
        lambda: (m := plane.message(queue_id)) and len(m.attempts) >= 2 and m,
        what="two paused attempts",
    )
    assert {a["reply"] for a in view.attempts} == {"Delivery paused."}
    assert view.recipients[0]["state"] == "queued"
    assert sinks["127.0.0.23"].messages == []

    update(plane, paused, delivery_paused=False)
    sink = sinks["127.0.0.23"]
    await eventually(lambda: sink.messages, what="delivery through the redirect")
    assert sink.connections[0].peer_ip == "127.0.0.3"  # the redirect target's IP
    final = await eventually(
        lambda: (m := plane.message(queue_id)) and m.recipients[0]["state"] == "delivered" and m
    )
    last = final.attempts[-1]
    assert last["virtual_mta"] == "ip-a" and last["effective_virtual_mta"] == "ip-b"


async def test_without_any_virtual_mta_mail_goes_direct_to_mx(world: Any) -> None:
    plane, sinks = world
    await plane.asend(message(None), ["user@c.test"])
    seen = await eventually(lambda: sinks["127.0.0.23"].messages, what="direct delivery")
    assert seen[0].rcpt_tos == ["user@c.test"]
    assert sinks["127.0.0.23"].connections[0].ehlo_name == "vmta.test"  # the host's name


def job(i: int, selector: str, address: str) -> Job:
    now = time.time()
    return Job(
        recipient_id=i,
        message_id=f"M{i}",
        address=address,
        attempts=0,
        mail_from="s@src.test",
        received_at=now,
        expires_at=now + 3600,
        vmta_selector=selector,
        routing_memory=None,
        is_bounce=False,
    )


assert FAST.retry.backoff[0] < 1  # these tests rely on quick retries
