"""Egress connectors against real peers: the recording sink sees where a connection came
from; microsocks and tinyproxy carry tunnels; raw scripted servers play broken proxies."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.free_ports import free_port
from tests.peers.proxies import MICROSOCKS_EGRESS_IP, TINYPROXY_EGRESS_IP, ProxyProcess
from tests.peers.scripted import Reader, smtp_script
from tests.peers.sink import RecordingSink
from vmta.domain.paths.egress_route import EgressProtocol, EgressRoute, direct_route
from vmta.egress.connect_error import EgressError
from vmta.egress.connector import open_connection
from vmta.egress.socks5 import encode_destination
from vmta.smtp.client import SessionOptions, SmtpSession

BODY = b"Subject: egress\r\n\r\nHello through the route.\r\n"
PUBLIC_IP = "198.51.100.7"  # what receivers would see; only a label here


def proxy_route(protocol: EgressProtocol, port: int, bind_ip: str | None = None) -> EgressRoute:
    return EgressRoute(
        public_ip=PUBLIC_IP,
        bind_ip=bind_ip,
        protocol=protocol,
        proxy_host="127.0.0.1",
        proxy_port=port,
    )


async def deliver(route: EgressRoute, sink: RecordingSink) -> None:
    """Open the route to the sink, send one message, quit."""
    reader, writer = await open_connection(route, sink.host, sink.port, timeout=10)
    session = await SmtpSession.start(
        reader,
        writer,
        "sink.test",
        SessionOptions(ehlo_name="egress.vmta.test", command_timeout=10, data_timeout=10),
        peer_ip=sink.host,
    )
    result = await session.send("a@x.test", ["b@y.test"], BODY)
    await session.quit()
    assert result.delivered


async def expect_failure(route: EgressRoute, host: str, port: int) -> EgressError:
    with pytest.raises(EgressError) as caught:
        await open_connection(route, host, port, timeout=5)
    return caught.value


# -- direct and NAT ---------------------------------------------------------------------


async def test_direct_route_binds_the_source_ip(sink: RecordingSink) -> None:
    await deliver(direct_route("127.0.0.2"), sink)
    assert sink.connections[0].peer_ip == "127.0.0.2"
    assert sink.messages[0].data == BODY


async def test_nat_route_binds_the_local_ip(sink: RecordingSink) -> None:
    route = EgressRoute(public_ip=PUBLIC_IP, bind_ip="127.0.0.4", protocol=EgressProtocol.NAT)
    await deliver(route, sink)
    assert sink.connections[0].peer_ip == "127.0.0.4"


async def test_unbound_route_lets_the_system_choose(sink: RecordingSink) -> None:
    await deliver(direct_route(None), sink)
    assert sink.connections[0].peer_ip == "127.0.0.1"


async def test_a_source_ip_that_is_not_local_fails_at_connect(sink: RecordingSink) -> None:
    error = await expect_failure(direct_route("192.0.2.10"), sink.host, sink.port)
    assert error.stage == "connect"
    assert "cannot bind source address 192.0.2.10" in error.reason
    assert error.route == "192.0.2.10"
    assert sink.connections == []


async def test_destination_down_then_up_again(sink: RecordingSink) -> None:
    sink.stop()
    error = await expect_failure(direct_route("127.0.0.2"), sink.host, sink.port)
    assert error.stage == "connect"
    assert error.reason == (
        f"connection to 127.0.0.1:{sink.port} from 127.0.0.2 failed: connection refused"
    )
    sink.start()  # the same port
    await deliver(direct_route("127.0.0.2"), sink)
    assert len(sink.messages) == 1


# -- SOCKS5 through microsocks ----------------------------------------------------------


async def test_socks5_tunnel_through_microsocks(
    sink: RecordingSink, microsocks: ProxyProcess
) -> None:
    await deliver(proxy_route(EgressProtocol.SOCKS, microsocks.port, "127.0.0.1"), sink)
    assert sink.connections[0].peer_ip == MICROSOCKS_EGRESS_IP
    assert sink.messages[0].data == BODY


async def test_socks5_proxy_down_is_a_connect_failure_naming_the_route(
    sink: RecordingSink, microsocks: ProxyProcess
) -> None:
    route = proxy_route(EgressProtocol.SOCKS, microsocks.port)
    microsocks.stop()
    error = await expect_failure(route, sink.host, sink.port)
    assert error.stage == "connect"
    assert PUBLIC_IP in error.route and PUBLIC_IP in str(error)
    assert f"SOCKS5 proxy 127.0.0.1:{microsocks.port}" in error.reason
    assert "connection refused" in error.reason

    microsocks.start()  # back on the same port: the same route works again
    await deliver(route, sink)
    assert sink.connections[0].peer_ip == MICROSOCKS_EGRESS_IP


async def test_socks5_refusal_reports_the_rep_meaning(microsocks: ProxyProcess) -> None:
    closed_port = free_port()
    error = await expect_failure(
        proxy_route(EgressProtocol.SOCKS, microsocks.port), "127.0.0.1", closed_port
    )
    assert error.stage == "handshake"
    assert error.reason == (
        f"SOCKS5 proxy 127.0.0.1:{microsocks.port} refused CONNECT to 127.0.0.1:{closed_port}: "
        "connection refused by destination host (REP 5)"
    )


# -- HTTP CONNECT through tinyproxy -----------------------------------------------------


async def test_http_connect_tunnel_through_tinyproxy(
    sink: RecordingSink, tinyproxy_factory: Any
) -> None:
    proxy = tinyproxy_factory([sink.port])
    await deliver(proxy_route(EgressProtocol.HTTP, proxy.port), sink)
    assert sink.connections[0].peer_ip == TINYPROXY_EGRESS_IP
    assert sink.messages[0].data == BODY


async def test_http_proxy_refusal_403_is_a_handshake_failure(
    sink: RecordingSink, tinyproxy_factory: Any
) -> None:
    proxy = tinyproxy_factory([sink.port])  # CONNECT to any other port is forbidden
    other = free_port()
    error = await expect_failure(proxy_route(EgressProtocol.HTTP, proxy.port), "127.0.0.1", other)
    assert error.stage == "handshake"
    assert error.reason == (
        f"HTTP proxy 127.0.0.1:{proxy.port} refused CONNECT to 127.0.0.1:{other}: "
        "403 Access violation"
    )


async def test_http_proxy_down_is_a_connect_failure(
    sink: RecordingSink, tinyproxy_factory: Any
) -> None:
    proxy = tinyproxy_factory([sink.port])
    proxy.stop()
    error = await expect_failure(proxy_route(EgressProtocol.HTTP, proxy.port), sink.host, sink.port)
    assert error.stage == "connect"
    assert f"HTTP proxy 127.0.0.1:{proxy.port}" in error.reason
    assert PUBLIC_IP in error.route


# -- proxies that misbehave -------------------------------------------------------------


def answer(data: bytes) -> Any:
    """An HTTP proxy that reads the request head, answers ``data`` and waits."""

    async def handler(reader: Reader, writer: asyncio.StreamWriter) -> None:
        while await reader.readline() not in (b"\r\n", b""):
            pass
        writer.write(data)
        await writer.drain()
        await reader.read()  # until the client hangs up

    return handler


@pytest.mark.parametrize(
    ("protocol", "garbage", "expected"),
    [
        (
            EgressProtocol.SOCKS,
            b"HTTP/1.0 400 Bad Request\r\n\r\n",
            "answered with version byte 0x48, not 0x05: not a SOCKS5 proxy (an HTTP proxy?)",
        ),
        (EgressProtocol.SOCKS, b"\x05\x02", "chose method 0x02, which we did not offer"),
        (EgressProtocol.SOCKS, b"\x05\xff", "accepts none of our methods"),
        (EgressProtocol.SOCKS, b"\x05", "closed the connection during the handshake"),
        (
            EgressProtocol.SOCKS,
            b"\x05\x00\x05\x00\x01\x01\x00",  # reply with a reserved byte of 0x01
            "reply with reserved byte 0x01, not 0x00",
        ),
        (
            EgressProtocol.SOCKS,
            b"\x05\x00\x05\x00\x00\x07",
            "reply with unknown address type 0x07",
        ),
        (
            EgressProtocol.SOCKS,
            b"\x05\x00\x05\x00\x00\x01\x7f\x00",  # IPv4 bound address cut short
            "closed the connection during the handshake (bound address: got 2 of 6 bytes)",
        ),
        (
            EgressProtocol.HTTP,
            b"SSH-2.0-OpenSSH_9.6\r\n",
            "answered something that is not an HTTP status line: 'SSH-2.0-OpenSSH_9.6'",
        ),
        (
            EgressProtocol.HTTP,
            b"HTTP/1.1 200 OK\r\nthis is no header\r\n\r\n",
            "sent a malformed header line: 'this is no header'",
        ),
        (
            EgressProtocol.HTTP,
            b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 20_000 + b"\r\n\r\n",
            "sent more than 16384 bytes of response headers",
        ),
        (
            EgressProtocol.HTTP,
            b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n",
            "407 Proxy Authentication Required (proxy authentication is not supported)",
        ),
        (
            EgressProtocol.HTTP,
            b"HTTP/1.1 200 OK\r\nVia: x",
            "closed the connection inside its response headers",
        ),
    ],
)
async def test_a_proxy_answering_garbage_is_a_handshake_failure(
    raw_server: Any, protocol: EgressProtocol, garbage: bytes, expected: str
) -> None:
    async def handler(reader: Reader, writer: asyncio.StreamWriter) -> None:
        if protocol is EgressProtocol.SOCKS:
            await reader.readexactly(3)  # greeting
            writer.write(garbage[:2])
            if len(garbage) > 2:
                await reader.readexactly(10)  # CONNECT to an IPv4 address
                writer.write(garbage[2:])
        else:
            await reader.readline()
            writer.write(garbage)
        await writer.drain()
        # Then hang up: where the answer is cut short, that is what the client meets.

    proxy = await raw_server(handler)
    error = await expect_failure(proxy_route(protocol, proxy.port), "127.0.0.1", 25)
    assert error.stage == "handshake"
    assert expected in error.reason
    assert PUBLIC_IP in error.route


async def test_a_silent_proxy_times_out_in_the_handshake(raw_server: Any) -> None:
    async def handler(reader: Reader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    proxy = await raw_server(handler)
    with pytest.raises(EgressError) as caught:
        await open_connection(
            proxy_route(EgressProtocol.SOCKS, proxy.port), "127.0.0.1", 25, timeout=0.5
        )
    assert caught.value.stage == "handshake"
    assert "did not open the tunnel to 127.0.0.1:25 within 0.5 s" in caught.value.reason


async def test_http_request_writes_ipv6_in_brackets(raw_server: Any) -> None:
    proxy = await raw_server(answer(b"HTTP/1.1 200 Connection established\r\n\r\n"))
    _, writer = await open_connection(
        proxy_route(EgressProtocol.HTTP, proxy.port), "2001:db8::25", 2525, timeout=5
    )
    writer.close()
    assert bytes(proxy.received[0]) == (
        b"CONNECT [2001:db8::25]:2525 HTTP/1.1\r\nHost: [2001:db8::25]:2525\r\n\r\n"
    )


async def test_tunnel_bytes_that_arrive_with_the_proxy_answer_are_kept(raw_server: Any) -> None:
    # tinyproxy and others may send the destination's first bytes in the same segment
    # as "200 Connection established": they are the SMTP greeting and must not be lost.
    tunnel = smtp_script(None, {"EHLO": "250 tunnel.test"}, default="250 OK")

    async def handler(reader: Reader, writer: asyncio.StreamWriter) -> None:
        while await reader.readline() not in (b"\r\n", b""):
            pass
        writer.write(b"HTTP/1.0 200 Connection established\r\n\r\n220 tunnel.test ESMTP\r\n")
        await writer.drain()
        await tunnel(reader, writer)

    proxy = await raw_server(handler)
    reader, writer = await open_connection(
        proxy_route(EgressProtocol.HTTP, proxy.port), "127.0.0.1", 25, timeout=5
    )
    session = await SmtpSession.start(
        reader, writer, "tunnel.test", SessionOptions(ehlo_name="e.vmta.test", command_timeout=5)
    )
    await session.quit()
    assert session.greeting is not None and session.greeting.text == "tunnel.test ESMTP"


async def test_socks5_request_encodes_each_address_type(raw_server: Any) -> None:
    # RFC 1928 §4-5: ATYP 1 (IPv4), 4 (IPv6) and 3 (length-prefixed domain name).
    assert encode_destination("127.0.0.1", 25) == b"\x01\x7f\x00\x00\x01\x00\x19"
    assert encode_destination("::1", 587) == b"\x04" + b"\x00" * 15 + b"\x01\x02\x4b"
    assert encode_destination("mx.test", 25) == b"\x03\x07mx.test\x00\x19"

    # And on the wire, to a proxy that accepts: greeting, then the IPv6 CONNECT request.
    async def handler(reader: Reader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(3)
        writer.write(b"\x05\x00")
        await reader.readexactly(22)
        writer.write(b"\x05\x00\x00\x04" + b"\x00" * 16 + b"\x00\x00")
        await reader.read()

    proxy = await raw_server(handler)
    _, writer = await open_connection(
        proxy_route(EgressProtocol.SOCKS, proxy.port), "::1", 587, timeout=5
    )
    writer.close()
    assert bytes(proxy.received[0]) == (
        b"\x05\x01\x00" + b"\x05\x01\x00\x04" + b"\x00" * 15 + b"\x01\x02\x4b"
    )


async def test_a_destination_that_cannot_be_written_is_refused() -> None:
    for host, port in (("127.0.0.1\r\nX-Evil: 1", 25), ("127.0.0.1", 0), ("127.0.0.1", 70000)):
        error = await expect_failure(direct_route(None), host, port)
        assert error.stage == "connect"
        assert "cannot connect to" in error.reason
