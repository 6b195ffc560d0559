"""How one outbound connection leaves this host (contract §3.2, "Meaning at delivery time").

A delivery has a *source IP*: an IP address VirtualMTA's ``ip`` or a relay server's
``source_ip.ip``. When that address is the ``public_ip`` of an external MTA, the connection
binds the external MTA's ``local_ip`` and goes out by NAT, through a SOCKS5 proxy or through
an HTTP CONNECT proxy; otherwise it binds the source IP itself and connects directly.
Throttles, pauses and logs name ``public_ip``: the address receivers see.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class EgressProtocol(StrEnum):
    DIRECT = "direct"  # bind the source IP, connect to the destination
    NAT = "nat"  # bind local_ip, connect to the destination; the network translates
    SOCKS = "socks"  # SOCKS5 (RFC 1928) CONNECT through proxy_host:proxy_port
    HTTP = "http"  # HTTP CONNECT (RFC 7231 §4.3.6) through proxy_host:proxy_port


@dataclass(frozen=True)
class EgressRoute:
    public_ip: str | None  # what receivers see; None = the host's default address
    bind_ip: str | None  # local address to bind; None = let the OS choose
    protocol: EgressProtocol = EgressProtocol.DIRECT
    proxy_host: str | None = None
    proxy_port: int | None = None

    @property
    def tunnelled(self) -> bool:
        return self.protocol in (EgressProtocol.SOCKS, EgressProtocol.HTTP)

    def describe(self) -> str:
        """A short label for logs and attempt records; never holds a secret."""
        if self.tunnelled:
            return f"{self.public_ip} via {self.protocol.value} {self.proxy_host}:{self.proxy_port}"
        if self.protocol is EgressProtocol.NAT:
            return f"{self.public_ip} via nat from {self.bind_ip}"
        return self.bind_ip or "default source address"


def direct_route(source_ip: str | None) -> EgressRoute:
    """The route of a source IP that is not an external MTA: bind it and connect."""
    return EgressRoute(public_ip=source_ip, bind_ip=source_ip)
