"""The SMTP client's TLS decisions: which context a session uses, what the relay's TLS
policy demands of it (``vmta.domain.paths.relay_tls``), and how a failed handshake is told."""

from __future__ import annotations

import ssl
from functools import cache

from vmta.domain.paths.relay_tls import TlsDemand, TlsPolicy, tls_demand
from vmta.smtp.client_options import SessionOptions, peer_is_remote


def session_policy(options: SessionOptions) -> TlsPolicy:
    return options.tls_policy


def session_demand(options: SessionOptions, peer_ip: str) -> TlsDemand:
    """What the session with ``peer_ip`` must get before it may go on."""
    return tls_demand(
        session_policy(options),
        sends_credentials=options.has_credentials,
        peer_is_remote=peer_is_remote(peer_ip, loopback_is_remote=options.loopback_is_remote),
        allow_plaintext=options.allow_plaintext_auth,
    )


def handshake_failure(exc: BaseException, server_name: str, *, credentials: bool) -> str:
    """The reason a deferred message carries when STARTTLS's handshake failed."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        text = (
            f"the TLS certificate of {server_name} did not verify:"
            f" {exc.verify_message or exc.reason or exc}"
        )
        if credentials:
            text += "; the relay credentials were not sent"
        return text
    detail = "timed out" if isinstance(exc, TimeoutError) else str(exc) or repr(exc)
    return f"TLS handshake with {server_name} failed: {detail}"


@cache
def tls_context(verify: bool, ca_file: str | None = None) -> ssl.SSLContext:
    """Built once per process: loading the CA store for every connection is costly.
    Verifying means the chain to a trusted CA (the system's store, or ``ca_file`` alone)
    and the destination's host name in the certificate (RFC 6125; Python's
    check_hostname, with SNI sent for a name)."""
    context = ssl.create_default_context(cafile=ca_file if verify else None)
    if not verify:
        # Opportunistic TLS (RFC 7435 §4): encrypt against passive eavesdropping even when
        # the certificate cannot be checked, which is the norm between MTAs.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
