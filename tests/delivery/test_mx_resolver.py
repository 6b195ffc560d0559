"""The MX resolver against a real DNS server (dnsmasq on 127.0.0.1, a free port).

Assertions are on the plan the resolver returns and on the queries dnsmasq received.
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections import Counter
from typing import Any

import dns.message
import dns.rcode
import pytest

from tests.manual_clock import ManualClock
from tests.peers.dns import DnsmasqServer, DnsZone
from vmta.delivery.routing.mx_resolver import (
    DestinationRejected,
    DnsUnavailable,
    InvalidDnsServer,
    MxResolver,
    NoSuchDomain,
    NullMx,
)
from vmta.domain.errors import PermanentError, TemporaryError

pytestmark = pytest.mark.peers


def zone(ttl: int = 60) -> DnsZone:
    return (
        DnsZone(ttl=ttl)
        .mx("a.test", "mx-b.a.test", 10)
        .mx("a.test", "mx-a.a.test", 5)
        .mx("a.test", "mx-c.a.test", 10)
        .host("mx-a.a.test", "127.0.0.21", "::21")
        .host("mx-b.a.test", "127.0.0.22")
        .host("mx-c.a.test", "127.0.0.23")
        .host("nomx.test", "127.0.0.30")
        .null_mx("null.test")
        .mx("dangling.test", "ghost.test", 10)
        .mx("partial.test", "ghost.test", 5)
        .mx("partial.test", "mx-b.a.test", 20)
    )


def resolver(server: DnsmasqServer, clock: ManualClock | None = None, **kw: Any) -> MxResolver:
    return MxResolver([server.address], clock=clock or ManualClock(), **kw)


async def test_mx_hosts_come_in_preference_order_with_their_addresses(
    dnsmasq: DnsmasqServer,
) -> None:
    dnsmasq.start(zone())
    found = await resolver(dnsmasq, rng=random.Random(1)).resolve("A.Test.")
    assert found.domain == "a.test"
    assert not found.implicit
    first, *rest = found.hosts
    assert (first.name, first.preference, first.addresses) == (
        "mx-a.a.test",
        5,
        ("127.0.0.21", "::21"),
    )
    assert sorted(host.name for host in rest) == ["mx-b.a.test", "mx-c.a.test"]
    assert [host.preference for host in rest] == [10, 10]
    assert found.addresses(4)[0] == "127.0.0.21"
    assert "::21" not in found.addresses(4)
    assert found.mx_names[0] == "mx-a.a.test"
    assert ("MX", "a.test") in dnsmasq.queries()


async def test_equal_preferences_are_tried_in_random_order(dnsmasq: DnsmasqServer) -> None:
    dnsmasq.start(zone())
    mx = resolver(dnsmasq, rng=random.Random(7))
    seconds = Counter([(await mx.resolve("a.test")).hosts[1].name for _ in range(40)])
    assert set(seconds) == {"mx-b.a.test", "mx-c.a.test"}
    # One MX query: the other 39 plans came from the cache, shuffled afresh.
    assert Counter(dnsmasq.queries())[("MX", "a.test")] == 1


async def test_a_domain_without_mx_is_its_own_implicit_mx(dnsmasq: DnsmasqServer) -> None:
    dnsmasq.start(zone())
    found = await resolver(dnsmasq).resolve("nomx.test")
    assert found.implicit
    assert [(h.name, h.addresses) for h in found.hosts] == [("nomx.test", ("127.0.0.30",))]
    assert found.mx_names == ()
    seen = dnsmasq.queries()
    assert ("MX", "nomx.test") in seen
    assert ("A", "nomx.test") in seen


async def test_a_null_mx_fails_permanently(dnsmasq: DnsmasqServer) -> None:
    dnsmasq.start(zone())
    with pytest.raises(NullMx) as caught:
        await resolver(dnsmasq).resolve("null.test")
    assert isinstance(caught.value, PermanentError)
    assert str(caught.value) == "null.test publishes a null MX (RFC 7505): it accepts no mail."
    assert caught.value.status == "5.1.10"
    with pytest.raises(NullMx):
        await resolver(dnsmasq).mx_hosts("null.test")


async def test_a_domain_that_does_not_exist_fails_permanently(dnsmasq: DnsmasqServer) -> None:
    dnsmasq.start(zone())
    with pytest.raises(NoSuchDomain, match=r"^missing\.test does not exist \(NXDOMAIN\)\.$"):
        await resolver(dnsmasq).resolve("missing.test")
    assert ("MX", "missing.test") in dnsmasq.queries()


async def test_mx_hosts_without_addresses_are_skipped_or_fail(dnsmasq: DnsmasqServer) -> None:
    dnsmasq.start(zone())
    mx = resolver(dnsmasq)
    found = await mx.resolve("partial.test")
    assert [h.name for h in found.hosts] == ["mx-b.a.test"]
    with pytest.raises(DestinationRejected, match=r"None of the MX hosts of dangling\.test"):
        await mx.resolve("dangling.test")
    assert ("A", "ghost.test") in dnsmasq.queries()


async def test_answers_are_cached_for_their_ttl_then_refreshed(dnsmasq: DnsmasqServer) -> None:
    clock = ManualClock()
    dnsmasq.start(zone(ttl=30))
    mx = resolver(dnsmasq, clock)
    assert (await mx.resolve("a.test")).hosts[0].name == "mx-a.a.test"
    changed = DnsZone(ttl=30).mx("a.test", "new.a.test", 1).host("new.a.test", "127.0.0.40")
    dnsmasq.restart(changed)
    clock.advance(29)
    assert (await mx.resolve("a.test")).hosts[0].name == "mx-a.a.test"  # still cached
    assert dnsmasq.queries() == []
    clock.advance(2)
    refreshed = await mx.resolve("a.test")
    assert [(h.name, h.addresses) for h in refreshed.hosts] == [("new.a.test", ("127.0.0.40",))]
    assert ("MX", "a.test") in dnsmasq.queries()


async def test_a_negative_answer_is_cached_too(dnsmasq: DnsmasqServer) -> None:
    clock = ManualClock()
    dnsmasq.start(zone())
    mx = resolver(dnsmasq, clock, negative_ttl=60)
    with pytest.raises(NoSuchDomain):
        await mx.resolve("late.test")
    dnsmasq.restart(zone().host("late.test", "127.0.0.41"))
    with pytest.raises(NoSuchDomain):
        await mx.resolve("late.test")
    assert dnsmasq.queries() == []
    clock.advance(61)
    assert (await mx.resolve("late.test")).addresses() == ["127.0.0.41"]


async def test_the_cache_is_capped(dnsmasq: DnsmasqServer) -> None:
    dnsmasq.start(zone())
    mx = resolver(dnsmasq, cache_size=2, ipv6=False)
    await mx.resolve("nomx.test")  # MX and A of nomx.test fill the cache
    await mx.resolve("partial.test")  # evicts them
    await mx.resolve("nomx.test")
    assert Counter(dnsmasq.queries())[("MX", "nomx.test")] == 2


async def test_concurrent_lookups_share_one_query(dnsmasq: DnsmasqServer) -> None:
    dnsmasq.start(zone())
    mx = resolver(dnsmasq)
    plans = await asyncio.gather(*(mx.resolve("a.test") for _ in range(20)))
    assert {plan.hosts[0].name for plan in plans} == {"mx-a.a.test"}
    counts = Counter(dnsmasq.queries())
    assert counts[("MX", "a.test")] == 1
    assert counts[("A", "mx-a.a.test")] == 1


async def test_mx_host_names_alone(dnsmasq: DnsmasqServer) -> None:
    dnsmasq.start(zone())
    mx = resolver(dnsmasq)
    assert (await mx.mx_hosts("a.test"))[0] == "mx-a.a.test"
    assert set(await mx.mx_hosts("a.test")) == {"mx-a.a.test", "mx-b.a.test", "mx-c.a.test"}
    assert await mx.mx_hosts("nomx.test") == ()
    assert ("A", "mx-a.a.test") not in dnsmasq.queries()  # no address lookups


async def test_address_literals_need_no_dns(dnsmasq: DnsmasqServer) -> None:
    dnsmasq.start(zone())
    mx = resolver(dnsmasq)
    found = await mx.resolve("[127.0.0.9]")
    assert found.literal
    assert found.addresses() == ["127.0.0.9"]
    assert (await mx.resolve("[IPv6:0::1]")).addresses() == ["::1"]
    assert await mx.mx_hosts("[127.0.0.9]") == ()
    with pytest.raises(DestinationRejected, match="is not an address literal"):
        await mx.resolve("[127.0.0.999]")
    assert dnsmasq.queries() == []


async def test_a_refusing_server_is_a_temporary_failure(dnsmasq: DnsmasqServer) -> None:
    dnsmasq.start(zone())  # answers REFUSED outside the local domain "test"
    with pytest.raises(DnsUnavailable) as caught:
        await resolver(dnsmasq, timeout=1, lifetime=2).resolve("example.org")
    assert isinstance(caught.value, TemporaryError)
    assert ("MX", "example.org") in dnsmasq.queries()


async def test_an_unreachable_server_is_a_temporary_failure(dnsmasq: DnsmasqServer) -> None:
    dnsmasq.start(zone())
    mx = resolver(dnsmasq, timeout=0.5, lifetime=1)
    await mx.resolve("nomx.test")
    dnsmasq.stop()  # nothing listens on its port any more
    with pytest.raises(DnsUnavailable):
        await mx.resolve("a.test")
    # The failure was not cached: the same resolver works once the server is back.
    dnsmasq.start(zone())
    assert (await mx.resolve("a.test")).hosts[0].name == "mx-a.a.test"


class _Servfail(asyncio.DatagramProtocol):
    """A DNS server that answers every query with SERVFAIL, and keeps what it was asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        self.asked.append(query.question[0].name.to_text())
        response = dns.message.make_response(query)
        response.set_rcode(dns.rcode.SERVFAIL)
        self.transport.sendto(response.to_wire(), addr)


async def test_servfail_is_a_temporary_failure() -> None:
    loop = asyncio.get_running_loop()
    transport, server = await loop.create_datagram_endpoint(_Servfail, local_addr=("127.0.0.1", 0))
    try:
        port = transport.get_extra_info("sockname")[1]
        mx = MxResolver([f"127.0.0.1:{port}"], clock=ManualClock(), timeout=1, lifetime=2)
        with pytest.raises(DnsUnavailable, match="no server answered") as caught:
            await mx.resolve("a.test")
        assert isinstance(caught.value, TemporaryError)
        assert "a.test." in server.asked
    finally:
        transport.close()


async def test_a_silent_server_times_out_as_a_temporary_failure() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # receives queries, never answers
        port = silent.getsockname()[1]
        mx = MxResolver([f"127.0.0.1:{port}"], clock=ManualClock(), timeout=0.2, lifetime=0.5)
        with pytest.raises(DnsUnavailable, match="timed out"):
            await mx.resolve("a.test")


@pytest.mark.parametrize(
    "server", ["dns.example", "127.0.0.1:0", "127.0.0.1:x", "[::1]5353", "[::1]", "1.2.3.4:"]
)
def test_a_dns_server_must_be_an_address_with_an_optional_port(server: str) -> None:
    with pytest.raises(InvalidDnsServer, match="must be an IP address"):
        MxResolver([server], clock=ManualClock())


def test_dns_servers_take_ports() -> None:
    mx = MxResolver(["127.0.0.1:5353", "[::1]:53", "10.0.0.1"], clock=ManualClock(), port=5300)
    assert mx.servers == (("127.0.0.1", 5353), ("::1", 53), ("10.0.0.1", 5300))
