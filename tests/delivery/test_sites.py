"""Sites: domains hosted at one MX share its sessions (delivery/routing/router.site_of). dnsmasq
publishes 30 domains whose one MX is one sink; the sink counts the connections. Direct
delivery (no VirtualMTA) carries 150 messages over at most 20 connections (one path per
domain opened 30). A domain with throttle rules of its own shares the site's sessions as
well and keeps its rules exactly: a session carries its mail only while holding one of
its connection slots, so at most as many sessions carry it at once as its rule allows,
and its messages an hour hold (on a manual clock, so that the pacing is counted, not
timed)."""

from __future__ import annotations

import asyncio
import smtplib
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from tests.delivery.conftest import FAST, RunningPlane, eventually, insert, ip_vmta
from tests.manual_clock import ManualClock
from tests.peers.dns import DnsmasqServer, DnsZone
from tests.peers.sink import RecordingSink, SeenConnection
from vmta.domain.config.virtual_mta import Limits, ThrottleRule

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
    plane_factory: Any,
    dnsmasq: DnsmasqServer,
    sink_factory: Any,
    mx_port: int,
    clock: ManualClock | None = None,
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
        # No cap on new connections a second: its token bucket fills with the engine's
        # time, which a manual clock stops.
        engine=replace(FAST, idle_timeout=5.0, max_connection_rate=0 if clock else 10.0),
        clock=clock,
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


def stints(connection: SeenConnection, domain: str) -> list[tuple[float, float]]:
    """When ``connection`` carried ``domain``'s mail: each run of its transactions for
    that domain, from the first MAIL to the last end of data (the sink's clock). vmta
    holds the domain's connection slot over at least that span."""
    runs: list[tuple[float, float]] = []
    current: tuple[float, float] | None = None
    for t in connection.transactions:
        if {r.rpartition("@")[2] for r in t.rcpt_tos} == {domain}:
            current = (current[0] if current else t.begun_at, t.at)
        elif current is not None:
            runs.append(current)
            current = None
    return runs + ([current] if current else [])


def most_at_once(spans: Sequence[tuple[float, float]]) -> int:
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])  # ends first
    most = now = 0
    for _, change in events:
        now += change
        most = max(most, now)
    return most


async def test_domains_with_limits_share_the_sites_sessions_and_keep_their_limits(
    plane_factory: Any, dnsmasq: DnsmasqServer, sink_factory: Any, mx_port: int
) -> None:
    plane, sink = await shared_mx(plane_factory, dnsmasq, sink_factory, mx_port)
    sink.data_delay = 0.05  # each transaction lasts a little, so that overlaps would show
    # The sink answers no DATA until all 100 messages are in vmta, so that a backlog
    # waits; the limited domains' mail comes last, once the site's 20 sessions are open
    # (with mail of other domains), and so must go over those sessions.
    sink.data_gate = threading.Event()
    limits = {"d0.test": 1, "d1.test": 2}
    rules = [ThrottleRule(domains=[d], limits=Limits(n, 0)) for d, n in limits.items()]
    insert(plane, ip_vmta("ip-1", ip="127.0.0.2", rules=rules))
    others = [f"u{n}@{DOMAINS[2 + n % 8]}" for n in range(80)]
    limited = [f"v{n}@{DOMAINS[n % 2]}" for n in range(20)]  # 10 each for d0, d1
    recipients = others + limited
    for batch in (others, limited):
        await asyncio.gather(
            *(asyncio.to_thread(send, plane.smtp_port, batch[i::4], "ip-1") for i in range(4))
        )
        await eventually(lambda: sink.open_now == 20, timeout=30, what="the site's 20 sessions")
    sink.data_gate.set()
    await eventually(lambda: len(sink.messages) == 100, timeout=90, what="100 messages")
    assert Counter(r for t in sink.messages for r in t.rcpt_tos) == Counter(recipients)
    assert len(sink.connections) <= 20  # the site's own cap
    used = [c for c in sink.connections if c.transactions]
    for domain, limit in limits.items():
        # The domain's rule: at most this many connections carry its mail at once...
        spans = [span for c in used for span in stints(c, domain)]
        assert most_at_once(spans) <= limit, (domain, spans)
        # ... and they are sessions of the site, which carry other domains' mail as well.
        carriers = [sorted(domains_of(c)) for c in used if domain in domains_of(c)]
        assert any(len(domains) > 1 for domains in carriers), (domain, carriers)


async def test_each_domain_of_a_site_keeps_its_message_rate(
    plane_factory: Any, dnsmasq: DnsmasqServer, sink_factory: Any, mx_port: int
) -> None:
    clock = ManualClock()  # the engine's time: pacing moves only when the test moves it
    plane, sink = await shared_mx(plane_factory, dnsmasq, sink_factory, mx_port, clock)
    rates = {"d0.test": 360, "d1.test": 720}  # one message every 10 s, every 5 s
    rules = [ThrottleRule(domains=[d], limits=Limits(0, n)) for d, n in rates.items()]
    insert(plane, ip_vmta("ip-1", ip="127.0.0.2", rules=rules))
    recipients = [f"u{n}@{DOMAINS[n % 10]}" for n in range(40)]  # 4 each for d0 .. d9
    await asyncio.gather(
        *(asyncio.to_thread(send, plane.smtp_port, recipients[i::4], "ip-1") for i in range(4))
    )

    def sent(domain: str) -> int:
        return sum(1 for t in sink.messages for r in t.rcpt_tos if r.endswith("@" + domain))

    others = DOMAINS[2:10]
    await eventually(lambda: all(sent(d) == 4 for d in others), timeout=60, what="the rest")
    await eventually(lambda: sent("d0.test") and sent("d1.test"), what="a first message each")
    # With the clock stopped, each limited domain has had its first slot only.
    assert (sent("d0.test"), sent("d1.test")) == (1, 1)
    start = clock.now()  # when both took their first slot
    for at, d0, d1 in [(5, 1, 2), (10, 2, 3), (15, 2, 4), (20, 3, 4), (30, 4, 4)]:
        clock.advance(start + at - clock.now())
        want = (d0, d1)
        await eventually(
            lambda want=want: (sent("d0.test"), sent("d1.test")) == want, what=f"{want} at {at} s"
        )
