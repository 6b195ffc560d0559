"""The one error of the egress layer: the connection could not be opened.

Everything that goes wrong before the SMTP greeting is a temporary failure of the attempt
(contract §3.2: "reported as a proxy handshake failure"). ``stage`` tells where it broke:
``connect`` (binding the source address, or the TCP connection to the destination or to
the proxy) or ``handshake`` (the proxy's SOCKS5 or HTTP CONNECT negotiation).
"""

from __future__ import annotations

from typing import Literal

from vmta.domain.errors import TemporaryError

EgressStage = Literal["connect", "handshake"]


class EgressError(TemporaryError):
    """Opening a connection along an egress route failed; try again later."""

    def __init__(self, stage: EgressStage, route: str, reason: str) -> None:
        self.stage: EgressStage = stage
        self.route = route  # EgressRoute.describe(): names the public IP, never a secret
        self.reason = reason  # one line, e.g. "SOCKS5 proxy 127.0.0.1:1081 refused ..."
        super().__init__(f"{reason} (egress {route}, stage {stage})")


class ProxyHandshakeError(TemporaryError):
    """A proxy refused or garbled its handshake; ``reason`` is one line for the log.

    Raised by ``socks5`` and ``http_connect``; ``connector`` turns it into an
    ``EgressError`` with stage ``handshake`` and the route's description.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)
