"""SOCKS5 CONNECT client (RFC 1928), "no authentication required" method only.

contract §3.2: an external MTA with protocol ``socks`` reaches the destination through a
SOCKS5 proxy without authentication. Every field of the proxy's answers is checked; any
deviation is a ``ProxyHandshakeError`` whose text says what the proxy did.
"""

from __future__ import annotations

import asyncio
import ipaddress
import struct

from vmta.egress.connect_error import ProxyHandshakeError
from vmta.egress.endpoint import authority

VERSION = 0x05
METHOD_NO_AUTH = 0x00
METHOD_NONE_ACCEPTABLE = 0xFF
CMD_CONNECT = 0x01
ATYP_IPV4 = 0x01
ATYP_DOMAIN = 0x03
ATYP_IPV6 = 0x04

# RFC 1928 §6, the REP field of a reply.
REPLY_MEANINGS = {
    0x01: "general SOCKS server failure",
    0x02: "connection not allowed by ruleset",
    0x03: "network unreachable",
    0x04: "host unreachable",
    0x05: "connection refused by destination host",
    0x06: "TTL expired",
    0x07: "command not supported",
    0x08: "address type not supported",
}

_ADDRESS_LENGTHS = {ATYP_IPV4: 4, ATYP_IPV6: 16}


def reply_meaning(rep: int) -> str:
    return REPLY_MEANINGS.get(rep, "unassigned reply code")


def encode_destination(host: str, port: int) -> bytes:
    """ATYP, DST.ADDR and DST.PORT of a request (RFC 1928 §4-5)."""
    if not 0 < port < 65536:
        raise ValueError(f"destination port {port} is outside 1-65535")
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        atyp = ATYP_IPV4 if address.version == 4 else ATYP_IPV6
        return bytes([atyp]) + address.packed + struct.pack("!H", port)
    try:
        name = host.encode("idna")
    except UnicodeError as exc:
        raise ValueError(f"destination host {host!r} is not a valid domain name") from exc
    # RFC 1928 §5: the first octet of a domain name holds its length, 1-255.
    if not 0 < len(name) < 256:
        raise ValueError(f"destination host name must be 1-255 octets, got {len(name)}")
    return bytes([ATYP_DOMAIN, len(name)]) + name + struct.pack("!H", port)


async def socks5_connect(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    host: str,
    port: int,
    *,
    proxy: str,
) -> None:
    """Ask the proxy (already connected) to CONNECT to host:port; return once it has.

    ``proxy`` labels the proxy in error texts ("127.0.0.1:1081"). On return the stream
    pair carries the tunnel; bytes the proxy sent after its reply stay in ``reader``.
    """
    destination = encode_destination(host, port)
    target = authority(host, port)

    # RFC 1928 §3: version identifier / method selection, offering only "no auth".
    writer.write(bytes([VERSION, 1, METHOD_NO_AUTH]))
    await writer.drain()
    version, method = await _read(reader, 2, proxy, "method selection")
    _check_version(version, proxy)
    if method == METHOD_NONE_ACCEPTABLE:
        raise ProxyHandshakeError(
            f"SOCKS5 proxy {proxy} accepts none of our methods (we offer only no-auth)"
        )
    if method != METHOD_NO_AUTH:
        raise ProxyHandshakeError(
            f"SOCKS5 proxy {proxy} chose method 0x{method:02x}, which we did not offer"
        )

    # RFC 1928 §4: VER CMD RSV ATYP DST.ADDR DST.PORT.
    writer.write(bytes([VERSION, CMD_CONNECT, 0x00]) + destination)
    await writer.drain()

    # RFC 1928 §6: VER REP RSV ATYP BND.ADDR BND.PORT.
    version, rep, reserved, atyp = await _read(reader, 4, proxy, "CONNECT reply")
    _check_version(version, proxy)
    if rep != 0x00:
        raise ProxyHandshakeError(
            f"SOCKS5 proxy {proxy} refused CONNECT to {target}: {reply_meaning(rep)} (REP {rep})"
        )
    if reserved != 0x00:
        raise ProxyHandshakeError(
            f"SOCKS5 proxy {proxy} sent a reply with reserved byte 0x{reserved:02x}, not 0x00"
        )
    if atyp in _ADDRESS_LENGTHS:
        length = _ADDRESS_LENGTHS[atyp]
    elif atyp == ATYP_DOMAIN:
        (length,) = await _read(reader, 1, proxy, "bound address length")
        if length == 0:
            raise ProxyHandshakeError(f"SOCKS5 proxy {proxy} sent an empty bound domain name")
    else:
        raise ProxyHandshakeError(
            f"SOCKS5 proxy {proxy} sent a reply with unknown address type 0x{atyp:02x}"
        )
    # BND.ADDR and BND.PORT: read so that the tunnel starts at the right byte; their
    # value (the proxy's outbound address) is not needed.
    await _read(reader, length + 2, proxy, "bound address")


def _check_version(version: int, proxy: str) -> None:
    if version != VERSION:
        hint = " (an HTTP proxy?)" if version == ord("H") else ""
        raise ProxyHandshakeError(
            f"SOCKS5 proxy {proxy} answered with version byte 0x{version:02x}, "
            f"not 0x05: not a SOCKS5 proxy{hint}"
        )


async def _read(reader: asyncio.StreamReader, count: int, proxy: str, what: str) -> bytes:
    try:
        return await reader.readexactly(count)
    except asyncio.IncompleteReadError as exc:
        raise ProxyHandshakeError(
            f"SOCKS5 proxy {proxy} closed the connection during the handshake "
            f"({what}: got {len(exc.partial)} of {count} bytes)"
        ) from None
