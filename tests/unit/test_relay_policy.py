"""Who may relay (vmta is never an open relay)."""

from __future__ import annotations

import re

import pytest

from vmta.domain.paths.relay_policy import is_loopback, may_relay, parse_networks

NETWORKS = parse_networks(["10.0.0.0/8", "2001:db8::/32"])


@pytest.mark.parametrize(
    ("client", "authenticated", "allowed"),
    [
        ("127.0.0.1", False, True),
        ("127.9.9.9", False, True),
        ("::1", False, True),
        ("::ffff:127.0.0.1", False, True),
        ("10.1.2.3", False, True),
        ("2001:db8::5", False, True),
        ("192.0.2.7", False, False),  # anyone else: refused
        ("192.0.2.7", True, True),  # unless authenticated
        ("2001:db9::5", False, False),
        (None, False, False),
        ("not-an-ip", False, False),
    ],
)
def test_may_relay(client: str | None, authenticated: bool, allowed: bool) -> None:
    assert may_relay(client, authenticated, NETWORKS) is allowed


def test_bad_network_is_named() -> None:
    with pytest.raises(ValueError, match=re.escape("'10.0.0.300/8'")):
        parse_networks(["10.0.0.0/8", "10.0.0.300/8"])


def test_loopback() -> None:
    assert is_loopback("127.0.0.2") and not is_loopback("192.0.2.1") and not is_loopback("")
