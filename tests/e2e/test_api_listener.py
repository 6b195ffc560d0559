"""The API's listening socket, as `vmta serve` binds it."""

from __future__ import annotations

import asyncio
import socket

import pytest

from vmta.runtime.server import bind_listener, bound_address
from vmta.runtime.settings import Listen, SettingsError


async def test_accepted_connections_have_tcp_nodelay() -> None:
    """Without TCP_NODELAY a response written as headers then body waits for the client's
    delayed ACK on every keep-alive request after the first (+40 ms each on Linux)."""
    sock = bind_listener(Listen("127.0.0.1", 0), "API")
    accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            peer = transport.get_extra_info("socket")
            accepted.set_result(peer.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
    try:
        address = bound_address(sock)
        _, writer = await asyncio.open_connection(address.host, address.port)
        assert await asyncio.wait_for(accepted, 10) != 0
        writer.close()
    finally:
        server.close()
        await server.wait_closed()


def test_port_zero_reports_the_chosen_port() -> None:
    sock = bind_listener(Listen("127.0.0.1", 0), "API")
    try:
        address = bound_address(sock)
        assert address.host == "127.0.0.1" and address.port != 0
        assert address.port == sock.getsockname()[1]
    finally:
        sock.close()


def test_address_that_is_not_local_is_refused_clearly() -> None:
    # 192.0.2.1 (TEST-NET-1, RFC 5737) is on no interface here: bind fails, nothing is sent.
    with pytest.raises(SettingsError) as caught:
        bind_listener(Listen("192.0.2.1", 0), "API")
    assert str(caught.value) == (
        "cannot listen on 192.0.2.1:0 for API: Cannot assign requested address"
    )
