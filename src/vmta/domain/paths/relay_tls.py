"""The TLS policy towards a relay server, and what it demands of a session.

GreenArrow's relay server record has no TLS field, so the policy is a setting
(``VMTA_RELAY_TLS``): one value for every relay server, or ``NAME=POLICY`` per relay
server (names compared ignoring case).

- ``opportunistic`` (the default): STARTTLS when offered, else cleartext (RFC 7435 §4);
  the certificate is not checked unless credentials are sent.
- ``required``: STARTTLS must be offered and succeed, else the mail waits; the
  certificate is not checked unless credentials are sent.
- ``verified``: as ``required``, and the certificate must verify (chain to a trusted CA,
  name matching the relay's destination host name, RFC 6125) whether or not credentials
  are sent.

Whatever the policy, credentials go to a non-loopback peer only over TLS whose
certificate verified: otherwise an active attacker who offers STARTTLS with any
certificate would receive them (RFC 4954 §4 and §14).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

TlsPolicy = Literal["opportunistic", "required", "verified"]
TLS_POLICIES: tuple[TlsPolicy, ...] = ("opportunistic", "required", "verified")


@dataclass(frozen=True)
class RelayTlsPolicies:
    default: TlsPolicy = "opportunistic"
    per_relay: Mapping[str, TlsPolicy] = field(default_factory=dict)  # lower-case names

    def for_relay(self, name: str | None) -> TlsPolicy:
        if name is None:
            return self.default
        return self.per_relay.get(name.lower(), self.default)


def parse_relay_tls(items: Iterable[str]) -> RelayTlsPolicies:
    """``["verified"]``, ``["required", "relay-1=verified"]``...; raises ValueError."""
    default: TlsPolicy = "opportunistic"
    per_relay: dict[str, TlsPolicy] = {}
    for raw in items:
        item = raw.strip()
        if not item:
            continue
        name, sep, value = item.rpartition("=")
        policy = value.strip().lower()
        if policy not in TLS_POLICIES:
            raise ValueError(
                f"{item!r}: the policy must be one of {', '.join(TLS_POLICIES)}"
                " (optionally as NAME=POLICY)"
            )
        if sep:
            if not name.strip():
                raise ValueError(f"{item!r}: the relay server name is empty")
            per_relay[name.strip().lower()] = policy
        else:
            default = policy
    return RelayTlsPolicies(default, per_relay)


@dataclass(frozen=True)
class TlsDemand:
    """What one session must get: TLS at all, and a verified certificate."""

    require_tls: bool
    verify: bool


def tls_demand(
    policy: TlsPolicy, *, sends_credentials: bool, peer_is_remote: bool, allow_plaintext: bool
) -> TlsDemand:
    """The demand of ``policy`` for a session that will (or will not) send credentials
    to a remote (or loopback) peer. ``allow_plaintext`` (VMTA_ALLOW_PLAINTEXT_AUTH) is the
    operator's explicit waiver of the credential rule."""
    guard_credentials = sends_credentials and peer_is_remote and not allow_plaintext
    return TlsDemand(
        require_tls=policy != "opportunistic",
        verify=policy == "verified" or guard_credentials,
    )
