"""How the SMTP client behaves towards one destination, and the rules it keeps.

The options come from a relay server or an IP address VirtualMTA (EHLO name, credentials);
the policy functions decide, from what the session learnt, what may be sent.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from functools import cache
from typing import Literal

from vmta.domain.relay_policy import is_loopback

StartTls = Literal["opportunistic", "never"]


@dataclass(frozen=True)
class SessionOptions:
    ehlo_name: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: StartTls = "opportunistic"
    allow_plaintext_auth: bool = False
    tls_verify: bool = False
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
        # API.md §2.5: authentication is used only when both username and password are set.
        return bool(self.username) and bool(self.password)


def cleartext_auth_allowed(peer_ip: str, *, tls: bool, allow_plaintext_auth: bool) -> bool:
    """May credentials be sent to ``peer_ip``? Over TLS, to loopback, or when allowed.

    RFC 4954 §4 and §14: a password must not cross a network in the clear. Without this
    rule a relay that stops offering STARTTLS (or an attacker who strips it from the EHLO
    reply) would receive it. An unparsable ``peer_ip`` counts as remote.
    """
    return tls or allow_plaintext_auth or is_loopback(peer_ip)


@cache
def tls_context(verify: bool) -> ssl.SSLContext:
    """Built once per process: loading the CA store for every connection is costly."""
    context = ssl.create_default_context()
    if not verify:
        # Opportunistic TLS (RFC 7435 §4): encrypt against passive eavesdropping even when
        # the certificate cannot be checked, which is the norm between MTAs.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
