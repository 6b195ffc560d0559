"""The relay TLS policy setting and what each policy demands of a session."""

from __future__ import annotations

import pytest

from vmta.domain.paths.relay_tls import TlsDemand, TlsPolicy, parse_relay_tls, tls_demand


def test_default_and_per_relay_policies() -> None:
    policies = parse_relay_tls(["required", " Relay-1 = verified ", ""])
    assert policies.for_relay("relay-1") == "verified"  # names ignore case
    assert policies.for_relay("other") == "required"
    assert parse_relay_tls([]).for_relay("x") == "opportunistic"


@pytest.mark.parametrize("item", ["strict", "relay-1=", "=verified"])
def test_bad_policy_is_refused(item: str) -> None:
    with pytest.raises(ValueError):
        parse_relay_tls([item])


@pytest.mark.parametrize(
    ("policy", "credentials", "remote", "waiver", "expected"),
    [
        ("opportunistic", False, True, False, TlsDemand(False, False)),
        ("opportunistic", True, True, False, TlsDemand(False, True)),  # guard credentials
        ("opportunistic", True, False, False, TlsDemand(False, False)),  # loopback
        ("opportunistic", True, True, True, TlsDemand(False, False)),  # operator's waiver
        ("required", False, True, False, TlsDemand(True, False)),
        ("verified", False, False, False, TlsDemand(True, True)),
    ],
)
def test_demand(
    policy: TlsPolicy, credentials: bool, remote: bool, waiver: bool, expected: TlsDemand
) -> None:
    demand = tls_demand(
        policy, sends_credentials=credentials, peer_is_remote=remote, allow_plaintext=waiver
    )
    assert demand == expected
