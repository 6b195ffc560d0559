"""External MTAs carry mail (issue 6): NAT, SOCKS5 through a real microsocks and HTTP
CONNECT through a real tinyproxy, each going out from its own egress address, observed at
a real sink. Faults: a proxy that is down defers, suspends after repeated failures, and
delivers once it is back, losing and duplicating nothing. SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from tests.delivery.conftest import RunningPlane, eventually, insert, ip_vmta, message
from tests.peers.proxies import ProxyProcess
from tests.peers.sink import RecordingSink
from vmta.domain.config.external_mta import ExternalMta, ExternalMtaProtocol
from vmta.store.external_mtas import ExternalMtaRepository

pytestmark = pytest.mark.peers

PUBLIC_IP = "198.51.100.7"  # not on this host: only reachable through the external MTA


def add_external(
    plane: RunningPlane,
    protocol: ExternalMtaProtocol,
    *,
    local_ip: str = "127.0.0.9",
    connect_ip: str | None = "127.0.0.1",
    connect_port: int = 1,
    public_ip: str = PUBLIC_IP,
) -> None:
    with plane.store.write() as conn:
        ExternalMtaRepository(conn).put(
            ExternalMta(
                public_ip=public_ip,
                local_ip=local_ip,
                connect_ip=connect_ip,
                connect_port=connect_port,
                protocol=protocol,
            )
        )
    plane.plane.config.invalidate()


async def test_socks_external_mta_goes_out_through_microsocks(
    world: Any, microsocks: ProxyProcess
) -> None:
    plane, sinks = world
    add_external(plane, ExternalMtaProtocol.SOCKS, connect_port=microsocks.port)
    insert(plane, ip_vmta("ext-ip", ip=PUBLIC_IP))
    queue_id = await plane.asend(message("ext-ip"), ["user@c.test"])
    sink: RecordingSink = sinks["127.0.0.23"]
    await eventually(lambda: sink.messages, what="delivery through microsocks")
    assert sink.connections[0].peer_ip == microsocks.egress_ip == "127.0.0.50"
    assert sink.connections[0].ehlo_name == "ext-ip.vmta.test"
    view = await eventually(
        lambda: (m := plane.message(queue_id)) and m.attempts and m, what="attempt record"
    )
    # Records name the public IP: the address receivers see.
    assert view.attempts[0]["source_ip"] == PUBLIC_IP


async def test_http_external_mta_goes_out_through_tinyproxy(
    world: Any, tinyproxy_factory: Any, mx_port: int
) -> None:
    plane, sinks = world
    proxy: ProxyProcess = tinyproxy_factory([mx_port])
    add_external(plane, ExternalMtaProtocol.HTTP, connect_port=proxy.port)
    insert(plane, ip_vmta("ext-ip", ip=PUBLIC_IP))
    await plane.asend(message("ext-ip"), ["user@c.test"])
    sink: RecordingSink = sinks["127.0.0.23"]
    await eventually(lambda: sink.messages, what="delivery through tinyproxy")
    assert sink.connections[0].peer_ip == "127.0.0.52"


async def test_nat_external_mta_binds_local_ip(world: Any) -> None:
    plane, sinks = world
    add_external(plane, ExternalMtaProtocol.NAT, local_ip="127.0.0.9", connect_ip=None)
    insert(plane, ip_vmta("ext-ip", ip=PUBLIC_IP))
    await plane.asend(message("ext-ip"), ["user@c.test"])
    sink: RecordingSink = sinks["127.0.0.23"]
    await eventually(lambda: sink.messages, what="delivery by NAT")
    assert sink.connections[0].peer_ip == "127.0.0.9"


async def test_relay_server_through_socks_still_authenticates(
    plane: RunningPlane, sink_factory: Any, microsocks: ProxyProcess
) -> None:
    sink: RecordingSink = sink_factory(credentials=("relay-user", "relay-pass"))
    add_external(plane, ExternalMtaProtocol.SOCKS, connect_port=microsocks.port)
    plane.add_relay(
        "relay-1",
        sink.port,
        source_ip=PUBLIC_IP,
        username="relay-user",
        password="relay-pass",
    )
    await plane.asend(message("relay-1"))
    await eventually(lambda: sink.messages, what="delivery through the tunnel")
    connection = sink.connections[0]
    assert connection.peer_ip == "127.0.0.50"
    assert connection.auth_identity == "relay-user"


async def test_a_change_of_external_mta_applies_to_the_next_connection(
    world: Any, microsocks: ProxyProcess
) -> None:
    plane, sinks = world
    add_external(plane, ExternalMtaProtocol.NAT, local_ip="127.0.0.9", connect_ip=None)
    insert(plane, ip_vmta("ext-ip", ip=PUBLIC_IP))
    sink: RecordingSink = sinks["127.0.0.23"]
    await plane.asend(message("ext-ip", "one"), ["user@c.test"])
    await eventually(lambda: sink.messages, what="first delivery")
    add_external(plane, ExternalMtaProtocol.SOCKS, connect_port=microsocks.port)  # replaces
    await plane.asend(message("ext-ip", "two"), ["user@c.test"])
    await eventually(lambda: len(sink.messages) == 2, what="second delivery")
    peers = {c.peer_ip for c in sink.connections if c.transactions}
    assert peers == {"127.0.0.9", "127.0.0.50"}


async def test_proxy_down_defers_suspends_then_delivers_once(
    plane_factory: Any, dnsmasq: Any, sink_factory: Any, mx_port: int, microsocks: ProxyProcess
) -> None:
    from tests.peers.dns import DnsZone

    dnsmasq.start(DnsZone().mx("c.test", "mx.c.test", 10).host("mx.c.test", "127.0.0.23"))
    sink: RecordingSink = sink_factory(host="127.0.0.23", port=mx_port)
    plane: RunningPlane = await plane_factory(
        dns_servers=(dnsmasq.address,),
        delivery_port=mx_port,
        recheck=0.3,
        external_mta_failures=2,
        external_mta_suspension=1.5,
    )
    add_external(plane, ExternalMtaProtocol.SOCKS, connect_port=microsocks.port)
    insert(plane, ip_vmta("ext-ip", ip=PUBLIC_IP))
    microsocks.stop()

    queue_id = await plane.asend(message("ext-ip"), ["user@c.test"])
    view = await eventually(
        lambda: (m := plane.message(queue_id)) and len(m.attempts) >= 2 and m,
        what="two failed attempts",
    )
    for attempt in view.attempts[:2]:
        assert attempt["outcome"] == "deferred"
        assert "connect stage failed" in attempt["reply"] and PUBLIC_IP in attempt["reply"]
    # After two egress failures the external MTA is suspended: its mail waits, visibly.
    state = await eventually(
        lambda: [e for e in plane.plane.state()["external_mtas"] if e["suspended_for"] > 0],
        what="a suspension",
    )
    assert state[0]["public_ip"] == PUBLIC_IP
    waiting = await eventually(
        lambda: (m := plane.message(queue_id)) and m.recipients[0]["waiting_reason"],
        what="the waiting reason",
    )
    assert "suspended" in waiting
    attempts_while_suspended = len(plane.message(queue_id).attempts)

    microsocks.start()  # back on the same port
    await eventually(lambda: sink.messages, timeout=30, what="delivery after the proxy is back")
    final = await eventually(
        lambda: (m := plane.message(queue_id)) and m.recipients[0]["state"] == "delivered" and m
    )
    assert len(sink.messages) == 1  # none lost, none duplicated
    assert sink.connections[-1].peer_ip == "127.0.0.50"
    assert len(final.attempts) == attempts_while_suspended + 1
