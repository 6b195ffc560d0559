"""External MTA field rules and the source IP → egress route look-up (contract §3.2)."""

from __future__ import annotations

import pytest

from vmta.domain.config.external_mta import (
    ExternalMta,
    ExternalMtaProtocol,
    canonical_ip,
    external_mta,
    route_for_source,
)
from vmta.domain.errors import ValidationFailed
from vmta.domain.paths.egress_route import EgressProtocol, EgressRoute, direct_route

NAT = external_mta(public_ip="8.8.8.8", local_ip="127.0.0.1", connect_port=2525)
SOCKS = external_mta(
    public_ip="203.0.113.5",
    local_ip="127.0.0.50",
    connect_ip="127.0.0.1",
    connect_port=1081,
    protocol="socks",
)
HTTP = external_mta(public_ip="2001:db8::7", local_ip="::1", connect_port=8888, protocol="http")
ALL = [NAT, SOCKS, HTTP]


def test_nat_binds_local_ip_and_connects_directly() -> None:
    route = route_for_source("8.8.8.8", ALL)
    assert route == EgressRoute(
        public_ip="8.8.8.8", bind_ip="127.0.0.1", protocol=EgressProtocol.NAT
    )
    assert not route.tunnelled
    assert route.proxy_host is None and route.proxy_port is None


def test_socks_tunnels_through_connect_ip_and_port() -> None:
    route = route_for_source("203.0.113.5", ALL)
    assert route == EgressRoute(
        public_ip="203.0.113.5",
        bind_ip="127.0.0.50",
        protocol=EgressProtocol.SOCKS,
        proxy_host="127.0.0.1",
        proxy_port=1081,
    )
    assert route.tunnelled


def test_http_without_connect_ip_tunnels_through_public_ip() -> None:
    route = route_for_source("2001:db8::7", ALL)
    assert route.protocol is EgressProtocol.HTTP
    assert route.bind_ip == "::1"
    assert (route.proxy_host, route.proxy_port) == ("2001:db8::7", 8888)
    assert route.public_ip == "2001:db8::7"


def test_source_ip_compares_in_canonical_form() -> None:
    assert route_for_source("2001:DB8:0:0::0007", ALL).protocol is EgressProtocol.HTTP
    # An ExternalMta built directly (not through external_mta) still matches canonically.
    raw = ExternalMta(public_ip="2001:DB8::0009", local_ip="::1", connect_port=1)
    assert route_for_source("2001:db8::9", [raw]).protocol is EgressProtocol.NAT


@pytest.mark.parametrize("source", ["8.8.4.4", "127.0.0.1", "2001:db8::8", "not-an-ip"])
def test_no_match_is_a_direct_route_from_the_source_ip(source: str) -> None:
    assert route_for_source(source, ALL) == direct_route(source)


def test_no_source_ip_is_the_default_route() -> None:
    assert route_for_source(None, ALL) == direct_route(None)
    assert route_for_source("8.8.8.8", []) == direct_route("8.8.8.8")


def test_local_ip_is_not_a_public_ip() -> None:
    # Only public_ip identifies an external MTA: sending from its local_ip is direct.
    assert route_for_source("127.0.0.50", ALL) == direct_route("127.0.0.50")


def test_external_mta_normalizes_addresses_and_defaults_to_nat() -> None:
    mta = external_mta(
        public_ip="2001:DB8::0001", local_ip="0:0::1", connect_ip="2001:db8:0::2", connect_port=1
    )
    assert (mta.public_ip, mta.local_ip, mta.connect_ip) == ("2001:db8::1", "::1", "2001:db8::2")
    assert mta.protocol is ExternalMtaProtocol.NAT


def test_external_mta_reports_every_broken_rule() -> None:
    with pytest.raises(ValidationFailed) as caught:
        external_mta(
            public_ip="8.8.8",
            local_ip="fe80::1%eth0",
            connect_ip="example.com",
            connect_port=0,
            protocol="smtp",
        )
    assert caught.value.messages == [
        "public_ip must be an IPv4 or IPv6 address, not '8.8.8'",
        "local_ip must be an IPv4 or IPv6 address, not 'fe80::1%eth0'",
        "connect_ip must be an IPv4 or IPv6 address, not 'example.com'",
        "connect_port must be an integer from 1 to 65535, not 0",
        "protocol must be 'nat', 'socks' or 'http', not 'smtp'",
    ]


@pytest.mark.parametrize("port", [1, 25, 65535])
def test_port_bounds_accepted(port: int) -> None:
    assert external_mta(public_ip="8.8.8.8", local_ip="::1", connect_port=port).connect_port == port


@pytest.mark.parametrize("port", [-1, 0, 65536, 70000])
def test_port_bounds_refused(port: int) -> None:
    with pytest.raises(ValidationFailed):
        external_mta(public_ip="8.8.8.8", local_ip="::1", connect_port=port)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("8.8.8.8", "8.8.8.8"),
        ("2001:DB8::0001", "2001:db8::1"),
        ("::FFFF:8.8.8.8", canonical_ip("::ffff:808:808")),
        ("08.8.8.8", None),
        ("8.8.8.8 ", None),
        ("fe80::1%eth0", None),
        ("", None),
    ],
)
def test_canonical_ip(text: str, canonical: str | None) -> None:
    assert canonical_ip(text) == canonical


def test_long_values_are_cut_short_in_problems() -> None:
    with pytest.raises(ValidationFailed) as caught:
        external_mta(public_ip="x" * 1000, local_ip="::1", connect_port=1)
    (message,) = caught.value.messages
    assert len(message) < 120 and message.endswith("...'")
