"""A host:port an egress connection is aimed at, written and checked once."""

from __future__ import annotations

import ipaddress
import re

# A DNS name as the scheduler may hand it over: letters, digits, "-", "_" and dots.
_HOST_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252}[A-Za-z0-9_.])?")


def authority(host: str, port: int) -> str:
    """``host:port``, with an IPv6 address in brackets (RFC 3986 §3.2.2, RFC 7231 §4.3.6)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_endpoint(host: str, port: int) -> None:
    """Refuse what cannot be written into a proxy request or a connect call.

    The host ends up inside an HTTP request line and a SOCKS5 request: anything but an
    IP address or a plain DNS name (no spaces, no CR/LF) could smuggle bytes into them.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"port {port!r} is outside 1-65535")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOST_NAME.fullmatch(host):
            raise ValueError(f"{host!r} is neither an IP address nor a host name") from None
