"""Who may relay through vmta. vmta is never an open relay: only loopback clients,
authenticated clients and the networks an operator lists may hand it mail for delivery
(RFC 5321 §3.6.1, §7.1)."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(texts: Sequence[str]) -> list[Network]:
    """CIDR networks; raises ValueError naming the bad entry."""
    networks: list[Network] = []
    for text in texts:
        text = text.strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(f"{text!r} is not an IP network (for example 10.0.0.0/8)") from None
    return networks


@functools.lru_cache(maxsize=1024)  # asked at every RCPT; clients are few
def is_loopback(ip: str | None) -> bool:
    if not ip:
        return False
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


def may_relay(client_ip: str | None, authenticated: bool, networks: Sequence[Network]) -> bool:
    if authenticated or is_loopback(client_ip):
        return True
    if not client_ip:
        return False
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return False
    return any(address in network for network in networks)
