"""HTTP CONNECT tunnel client (RFC 7231 §4.3.6).

contract §3.2: an external MTA with protocol ``http`` reaches the destination through
``CONNECT <dest-ip>:<port>``. The proxy must answer 2xx; its response header block is read
up to ``MAX_HEADER_BYTES`` and checked for shape. Whatever follows the blank line that
ends the header block is the first data of the tunnel (a fast SMTP server's greeting can
arrive in the same segment): we only ever read up to that line from the shared
``StreamReader``, so those bytes stay buffered in it for the SMTP session.
"""

from __future__ import annotations

import asyncio
import re

from vmta.egress.connect_error import ProxyHandshakeError
from vmta.egress.endpoint import authority

MAX_HEADER_BYTES = 16 * 1024

# RFC 7230 §3.1.2: status-line = HTTP-version SP status-code SP reason-phrase CRLF. Some
# proxies omit the reason phrase and its space; we accept that.
_STATUS_LINE = re.compile(rb"HTTP/([0-9])\.([0-9]) ([0-9]{3})(?: ([^\r\n]*))?")
# RFC 7230 §3.2: header-field = field-name ":" OWS field-value OWS; field-name is a token.
_HEADER_LINE = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+:[^\r\n]*")


async def http_connect(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    host: str,
    port: int,
    *,
    proxy: str,
    max_header_bytes: int = MAX_HEADER_BYTES,
) -> None:
    """Open a tunnel to host:port through the proxy (already connected).

    ``proxy`` labels the proxy in error texts. On return the stream pair carries the tunnel.
    """
    target = authority(host, port)
    # RFC 7231 §4.3.6: the request-target is the authority form; RFC 7230 §5.4 asks for a
    # Host header in every HTTP/1.1 request, with the same authority.
    writer.write(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode("ascii"))
    await writer.drain()

    budget = max_header_bytes
    line = await _read_line(reader, proxy, budget, max_header_bytes)
    budget -= len(line)
    match = _STATUS_LINE.fullmatch(line.rstrip(b"\r\n"))
    if match is None:
        raise ProxyHandshakeError(
            f"HTTP proxy {proxy} answered something that is not an HTTP status line: "
            f"{_excerpt(line)}"
        )
    status = int(match.group(3))
    reason = (match.group(4) or b"").decode("latin-1").strip()
    if not 200 <= status < 300:
        hint = " (proxy authentication is not supported)" if status == 407 else ""
        raise ProxyHandshakeError(
            f"HTTP proxy {proxy} refused CONNECT to {target}: {status} {reason}".rstrip() + hint
        )

    # RFC 7231 §4.3.6: a client MUST ignore Content-Length and Transfer-Encoding in a 2xx
    # answer to CONNECT, so the header block is read for its shape only.
    while True:
        line = await _read_line(reader, proxy, budget, max_header_bytes)
        budget -= len(line)
        field = line.rstrip(b"\r\n")
        if not field:
            return
        # RFC 7230 §3.2.4: obsolete line folding starts with SP or HTAB.
        if not _HEADER_LINE.fullmatch(field) and field[:1] not in (b" ", b"\t"):
            raise ProxyHandshakeError(
                f"HTTP proxy {proxy} sent a malformed header line: {_excerpt(line)}"
            )


async def _read_line(reader: asyncio.StreamReader, proxy: str, budget: int, limit: int) -> bytes:
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise ProxyHandshakeError(
                f"HTTP proxy {proxy} closed the connection before answering CONNECT"
            ) from None
        raise ProxyHandshakeError(
            f"HTTP proxy {proxy} closed the connection inside its response headers "
            f"(after {_excerpt(exc.partial)})"
        ) from None
    except asyncio.LimitOverrunError:
        raise ProxyHandshakeError(
            f"HTTP proxy {proxy} sent a response line longer than the stream limit"
        ) from None
    if len(line) > budget:
        raise ProxyHandshakeError(
            f"HTTP proxy {proxy} sent more than {limit} bytes of response headers"
        )
    return line


def _excerpt(data: bytes, limit: int = 60) -> str:
    shown = data[:limit].rstrip(b"\r\n")
    return repr(shown.decode("latin-1")) + ("..." if len(data) > limit else "")
