"""Sites: domains hosted at one MX share its sessions (delivery/routing/router.site_of). dnsmasq
publishes 30 domains whose one MX is one sink; the sink counts the connections. Direct
delivery (no VirtualMTA) carries 150 messages over at most 20 connections (one path per
domain opened 30). A domain with throttle rules of its own keeps them exactly: its mail
goes over its own connections, at most as many at once as its rule allows, while the
other domains share theirs."""

from __future__ import annotations

import asyncio
import itertools
import smtplib
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from tests.delivery.conftest import FAST, RunningPlane, eventually, insert, ip_vmta
from tests.peers.dns import DnsmasqServer, DnsZone
from tests.peers.sink import RecordingSink, SeenConnection
from vmta.domain.virtual_mta import Limits, ThrottleRule

DOMAINS = [f"d{n}.test" for n in range(30)]
MX_IP = "127.0.0.30"


def send(port: int, recipients: Sequence[str], selector: str | None = None) -> None:
    """One message per recipient, over one SMTP session."""
    head = f"X-GreenArrow-MtaID: {selector}\r\n" if selector else ""
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        for n, rcpt in enumerate(recipients):
            body = f"{head}From: s@src.test\r\nSubject: m{n}\r\n\r\nx\r\n"
            assert client.sendmail("s@src.test", [rcpt], body) == {}


async def shared_mx(
    plane_factory: Any, dnsmasq: DnsmasqServer, sink_factory: Any, mx_port: int
) -> tuple[RunningPlane, RecordingSink]:
    zone = DnsZone().host("mx.shared.test", MX_IP)
    for domain in DOMAINS:
        zone.mx(domain, "mx.shared.test", 10)
    dnsmasq.start(zone)
    sink: RecordingSink = sink_factory(host=MX_IP, port=mx_port)
    # Connections idle for 5 s before they close, as by default (FAST's 0.5 s would
    # close and reopen them between the messages of a slow injection).
    plane: RunningPlane = await plane_factory(
        dns_servers=(dnsmasq.address,),
        delivery_port=mx_port,
        engine=replace(FAST, idle_timeout=5.0),
    )
    return plane, sink


def domains_of(connection: SeenConnection) -> set[str]:
    return {rcpt.rpartition("@")[2] for t in connection.transactions for rcpt in t.rcpt_tos}


async def test_150_messages_to_30_domains_at_one_mx_use_at_most_20_connections(
    plane_factory: Any, dnsmasq: DnsmasqServer, sink_factory: Any, mx_port: int
) -> None:
    plane, sink = await shared_mx(plane_factory, dnsmasq, sink_factory, mx_port)
    recipients = [f"u{n}@{DOMAINS[n % 30]}" for n in range(150)]
    await asyncio.gather(
        *(asyncio.to_thread(send, plane.smtp_port, recipients[i::3]) for i in range(3))
    )
    await eventually(lambda: len(sink.messages) == 150, timeout=90, what="150 messages")
    got = Counter(rcpt for t in sink.messages for rcpt in t.rcpt_tos)
    assert got == Counter(recipients)  # each once
    used = [c for c in sink.connections if c.transactions]
    assert len(sink.connections) <= 20, len(sink.connections)
    assert max(len(domains_of(c)) for c in used) > 1  # a session carried several domains


async def test_a_domain_with_its_own_limits_keeps_them_while_the_others_share(
    plane_factory: Any, dnsmasq: DnsmasqServer, sink_factory: Any, mx_port: int
) -> None:
    plane, sink = await shared_mx(plane_factory, dnsmasq, sink_factory, mx_port)
    limited = ThrottleRule(domains=["d0.test"], limits=Limits(1, 0))
    insert(plane, ip_vmta("ip-1", ip="127.0.0.2", rules=[limited]))
    recipients = [f"u{n}@{DOMAINS[n % 10]}" for n in range(100)]  # 10 for d0.test
    await asyncio.gather(
        *(asyncio.to_thread(send, plane.smtp_port, recipients[i::4], "ip-1") for i in range(4))
    )
    await eventually(lambda: len(sink.messages) == 100, timeout=90, what="100 messages")
    assert Counter(r for t in sink.messages for r in t.rcpt_tos) == Counter(recipients)
    used = [c for c in sink.connections if c.transactions]
    d0 = [c for c in used if "d0.test" in domains_of(c)]
    assert all(domains_of(c) == {"d0.test"} for c in d0)  # its own sessions only
    # d0.test's rule: one connection at a time (the sink's clock; closed ones only).
    spans = sorted((c.opened_at, c.closed_at or float("inf")) for c in d0)
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans))
    shared = [c for c in used if "d0.test" not in domains_of(c)]
    assert max(len(domains_of(c)) for c in shared) > 1  # the others share sessions
