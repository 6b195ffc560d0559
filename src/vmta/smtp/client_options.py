"""How the SMTP client behaves towards one destination, and the rules it keeps.

The options come from a relay server or an IP address VirtualMTA (EHLO name, credentials);
the policy functions decide, from what the session learnt, what may be sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from vmta.domain.paths.relay_policy import is_loopback
from vmta.domain.paths.relay_tls import TlsPolicy

StartTls = Literal["opportunistic", "never"]


@dataclass(frozen=True)
class SessionOptions:
    ehlo_name: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: StartTls = "opportunistic"
    allow_plaintext_auth: bool = False
    # The relay server's TLS policy (domain/paths/relay_tls.py); MX delivery stays opportunistic.
    tls_policy: TlsPolicy = "opportunistic"
    ca_file: str | None = None  # verify against these CAs instead of the system's store
    # FOR TESTS ONLY (VMTA_LOOPBACK_COUNTS_AS_REMOTE): every peer in the tests is on
    # loopback, so this lets them show the rules that protect credentials sent to a
    # remote peer. Never set in production: it only makes vmta stricter.
    loopback_is_remote: bool = False
    command_timeout: float = 300.0  # RFC 5321 §4.5.3.2: 5 minutes for MAIL, RCPT, greeting
    data_timeout: float = 600.0  # RFC 5321 §4.5.3.2.6: 10 minutes for the end of data

    def __post_init__(self) -> None:
        if self.starttls not in ("opportunistic", "never"):
            raise ValueError(f"starttls must be 'opportunistic' or 'never', not {self.starttls!r}")
        if not self.ehlo_name or any(c.isspace() for c in self.ehlo_name):
            raise ValueError(f"EHLO name {self.ehlo_name!r} is empty or contains white space")
        if self.command_timeout <= 0 or self.data_timeout <= 0:
            raise ValueError("timeouts must be positive")

    @property
    def has_credentials(self) -> bool:
        # contract §2.5: authentication is used only when both username and password are set.
        return bool(self.username) and bool(self.password)


def peer_is_remote(peer_ip: str, *, loopback_is_remote: bool = False) -> bool:
    return loopback_is_remote or not is_loopback(peer_ip)


def cleartext_auth_allowed(
    peer_ip: str, *, tls: bool, allow_plaintext_auth: bool, loopback_is_remote: bool = False
) -> bool:
    """May credentials be sent to ``peer_ip``? Over TLS, to loopback, or when allowed.
    (Over TLS to a remote peer the certificate has been verified: see relay_tls.py.)

    RFC 4954 §4 and §14: a password must not cross a network in the clear. Without this
    rule a relay that stops offering STARTTLS (or an attacker who strips it from the EHLO
    reply) would receive it. An unparsable ``peer_ip`` counts as remote.
    """
    return (
        tls
        or allow_plaintext_auth
        or not peer_is_remote(peer_ip, loopback_is_remote=loopback_is_remote)
    )
