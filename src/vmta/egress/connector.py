"""Open one outbound TCP connection along an egress route.

``direct`` and ``nat`` bind the route's local address and connect to the destination;
``socks`` and ``http`` bind it, connect to the proxy and negotiate a tunnel to the
destination (contract §3.2). One deadline covers the whole: connecting and the handshake.
Whatever fails comes out as an ``EgressError`` (temporary) whose stage says where it broke
and whose route names the public IP, as throttles and logs do.
"""

from __future__ import annotations

import asyncio
import errno
import os
from typing import Protocol

from vmta.domain.paths.egress_route import EgressProtocol, EgressRoute
from vmta.egress.connect_error import EgressError, ProxyHandshakeError
from vmta.egress.endpoint import authority, check_endpoint
from vmta.egress.http_connect import http_connect
from vmta.egress.socks5 import socks5_connect

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Handshake(Protocol):
    async def __call__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        host: str,
        port: int,
        *,
        proxy: str,
    ) -> None: ...


_HANDSHAKES: dict[EgressProtocol, tuple[str, Handshake]] = {
    EgressProtocol.SOCKS: ("SOCKS5 proxy", socks5_connect),
    EgressProtocol.HTTP: ("HTTP proxy", http_connect),
}


# The timeout is one budget for connecting and the proxy handshake together, which
# asyncio.timeout() around the call could not split into the two stages it reports.
async def open_connection(
    route: EgressRoute,
    host: str,
    port: int,
    *,
    timeout: float,  # noqa: ASYNC109
) -> Streams:
    """Connect to host:port (an IP address) along ``route`` within ``timeout`` seconds."""
    label = route.describe()
    try:
        check_endpoint(host, port)
    except ValueError as exc:
        raise EgressError("connect", label, f"cannot connect to {host!r}: {exc}") from None
    deadline = asyncio.get_running_loop().time() + timeout

    if not route.tunnelled:
        return await _connect(route, host, port, deadline, timeout, what=authority(host, port))

    kind, handshake = _HANDSHAKES[route.protocol]
    if route.proxy_host is None or route.proxy_port is None:
        raise EgressError("connect", label, f"the route names no {kind} address")
    proxy = authority(route.proxy_host, route.proxy_port)
    reader, writer = await _connect(
        route, route.proxy_host, route.proxy_port, deadline, timeout, what=f"{kind} {proxy}"
    )
    target = authority(host, port)
    try:
        async with asyncio.timeout_at(deadline):
            await handshake(reader, writer, host, port, proxy=proxy)
    except ProxyHandshakeError as exc:
        writer.close()
        raise EgressError("handshake", label, exc.reason) from None
    except TimeoutError:
        writer.close()
        raise EgressError(
            "handshake",
            label,
            f"{kind} {proxy} did not open the tunnel to {target} within {timeout:g} s",
        ) from None
    except OSError as exc:
        writer.close()
        raise EgressError(
            "handshake",
            label,
            f"{kind} {proxy} failed while opening the tunnel to {target}: {_os_reason(exc)}",
        ) from None
    except BaseException:  # cancelled: do not leave the proxy connection open
        writer.close()
        raise
    return reader, writer


async def _connect(
    route: EgressRoute, host: str, port: int, deadline: float, budget: float, *, what: str
) -> Streams:
    label = route.describe()
    local_addr = (route.bind_ip, 0) if route.bind_ip else None
    source = f" from {route.bind_ip}" if route.bind_ip else ""
    try:
        async with asyncio.timeout_at(deadline):
            return await asyncio.open_connection(host, port, local_addr=local_addr)
    except TimeoutError:
        raise EgressError(
            "connect", label, f"connection to {what}{source} timed out after {budget:g} s"
        ) from None
    except OSError as exc:
        if exc.errno == errno.EADDRNOTAVAIL or "bind" in str(exc):
            # asyncio reports a failed bind() on local_addr this way; the usual cause is a
            # source IP that is not configured on this host.
            reason = f"cannot bind source address {route.bind_ip}: {_os_reason(exc)}"
        else:
            reason = f"connection to {what}{source} failed: {_os_reason(exc)}"
        raise EgressError("connect", label, reason) from None


def _os_reason(exc: OSError) -> str:
    if exc.errno:
        return os.strerror(exc.errno).lower()
    return str(exc) or type(exc).__name__
