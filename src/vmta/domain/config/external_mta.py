"""External MTAs (MailerQ REST API v1, contract §3.2): sending from addresses not on this host.

An external MTA names a ``public_ip`` that receivers will see and says how to reach it from
here: bind ``local_ip`` and either connect straight to the destination (``nat``: the network
translates ``local_ip`` to ``public_ip``) or tunnel through a proxy at ``connect_ip`` (default
``public_ip``) on ``connect_port`` (``socks``: SOCKS5, RFC 1928; ``http``: HTTP CONNECT,
RFC 7231 §4.3.6).

Field rules are pure functions that return the clause describing a problem (``"public_ip
must be ..."``) so that an edge can report every problem of a request in one sentence.
``route_for_source`` is the look-up the delivery side uses: a source IP that equals an
external MTA's ``public_ip`` leaves through that external MTA.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from vmta.domain.errors import ValidationFailed
from vmta.domain.paths.egress_route import EgressProtocol, EgressRoute, direct_route

PORT_MIN = 1
PORT_MAX = 65535


class ExternalMtaProtocol(StrEnum):
    NAT = "nat"
    SOCKS = "socks"
    HTTP = "http"


DEFAULT_PROTOCOL = ExternalMtaProtocol.NAT

_EGRESS = {
    ExternalMtaProtocol.NAT: EgressProtocol.NAT,
    ExternalMtaProtocol.SOCKS: EgressProtocol.SOCKS,
    ExternalMtaProtocol.HTTP: EgressProtocol.HTTP,
}


@dataclass(frozen=True)
class ExternalMta:
    """One external MTA. Addresses are held in canonical text (``canonical_ip``), so equal
    addresses compare equal whatever spelling a client used; build through ``external_mta``
    to get that and every field rule checked."""

    public_ip: str
    local_ip: str
    connect_port: int
    connect_ip: str | None = None
    protocol: ExternalMtaProtocol = DEFAULT_PROTOCOL

    @property
    def proxy_host(self) -> str:
        """Where a socks or http tunnel connects to (contract §3.2: default ``public_ip``)."""
        return self.connect_ip or self.public_ip

    def route(self) -> EgressRoute:
        """How a delivery from ``public_ip`` leaves. ``nat`` has no proxy: ``connect_ip``
        and ``connect_port`` are stored for MailerQ compatibility but unused."""
        if self.protocol is ExternalMtaProtocol.NAT:
            return EgressRoute(
                public_ip=self.public_ip, bind_ip=self.local_ip, protocol=EgressProtocol.NAT
            )
        return EgressRoute(
            public_ip=self.public_ip,
            bind_ip=self.local_ip,
            protocol=_EGRESS[self.protocol],
            proxy_host=self.proxy_host,
            proxy_port=self.connect_port,
        )


@functools.lru_cache(maxsize=4096)  # asked for every message routed; addresses are few
def canonical_ip(text: str) -> str | None:
    """The canonical text of an IPv4 or IPv6 address (IPv6 compressed, lower case), or None
    when ``text`` is not one. IPv6 zone ids (``fe80::1%eth0``) are refused: an address
    receivers see, or a proxy's address, cannot be link-scoped to one of our interfaces."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        return None
    return str(address)


def _cut(text: str) -> str:
    """A client's value as quoted in an error, cut short so that an error stays one line."""
    return text if len(text) <= 50 else text[:47] + "..."


def _shown(text: str) -> str:
    return repr(_cut(text))


def ip_problem(field: str, text: str) -> str | None:
    if canonical_ip(text) is None:
        return f"{field} must be an IPv4 or IPv6 address, not {_shown(text)}"
    return None


def port_problem(field: str, port: int) -> str | None:
    if not PORT_MIN <= port <= PORT_MAX:
        return f"{field} must be an integer from {PORT_MIN} to {PORT_MAX}, not {_cut(str(port))}"
    return None


def protocol_problem(field: str, text: str) -> str | None:
    """Protocol names are matched ignoring case (MailerQ's own SDK sends ``"Nat"``); they
    are stored and written in lower case."""
    values = [p.value for p in ExternalMtaProtocol]
    if text.lower() not in values:
        names = ", ".join(f"'{v}'" for v in values[:-1]) + f" or '{values[-1]}'"
        return f"{field} must be {names}, not {_shown(text)}"
    return None


def external_mta(
    *,
    public_ip: str,
    local_ip: str,
    connect_port: int,
    connect_ip: str | None = None,
    protocol: str | None = None,
) -> ExternalMta:
    """An external MTA from field values already of the right Python type.

    Raises ValidationFailed whose ``messages`` hold one clause per broken rule.
    ``protocol`` None means the default, ``nat``.
    """
    problems = [
        problem
        for problem in (
            ip_problem("public_ip", public_ip),
            ip_problem("local_ip", local_ip),
            None if connect_ip is None else ip_problem("connect_ip", connect_ip),
            port_problem("connect_port", connect_port),
            None if protocol is None else protocol_problem("protocol", protocol),
        )
        if problem is not None
    ]
    if problems:
        raise ValidationFailed(problems)
    return ExternalMta(
        public_ip=_canonical(public_ip),
        local_ip=_canonical(local_ip),
        connect_port=connect_port,
        connect_ip=None if connect_ip is None else _canonical(connect_ip),
        protocol=DEFAULT_PROTOCOL if protocol is None else ExternalMtaProtocol(protocol.lower()),
    )


def _canonical(text: str) -> str:
    canonical = canonical_ip(text)
    assert canonical is not None  # checked by the caller
    return canonical


def route_for_source(source_ip: str | None, external_mtas: Iterable[ExternalMta]) -> EgressRoute:
    """The egress route of a delivery whose source IP is ``source_ip`` (an IP address
    VirtualMTA's ``ip`` or a relay server's ``source_ip.ip``): through the external MTA
    whose ``public_ip`` equals it, else bound to ``source_ip`` directly.

    Addresses compare in canonical form, so ``2001:DB8::0001`` matches ``2001:db8::1``.
    """
    if source_ip is None:
        return direct_route(None)
    wanted = canonical_ip(source_ip)
    if wanted is None:
        return direct_route(source_ip)
    for mta in external_mtas:
        if canonical_ip(mta.public_ip) == wanted:
            return mta.route()
    return direct_route(source_ip)
