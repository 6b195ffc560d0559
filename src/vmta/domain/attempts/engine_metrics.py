"""What the engine reports as it works, as an interface: ``vmta.runtime.metrics``
implements it with Prometheus metrics; ``NoMetrics`` records nothing (tests, tools)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from vmta.domain.paths.egress_route import EgressRoute

# How a message came to be accepted: the ``source`` of ``vmta_messages_accepted_total``.
ACCEPT_SOURCES = ("smtp", "http", "amqp", "bounce")


class EngineMetrics(Protocol):
    def accepted(self, source: str) -> None:
        """A message committed to the spool; ``source`` is how it came (``ACCEPT_SOURCES``)."""
        ...

    def outcome(self, label: str, virtual_mta: str | None, path: str | None) -> None: ...

    def connection_opened(self, path: str) -> None: ...

    def connection_closed(self, path: str) -> None: ...

    def watch_ready(self, lengths: Callable[[], Mapping[str, int]]) -> None:
        """``lengths`` tells, when asked (a scrape), what waits in memory by path label."""
        ...

    def throttle_wait(self, seconds: float) -> None: ...

    def delivered(self, latency: float) -> None: ...


class NoMetrics:
    def accepted(self, source: str) -> None:
        return None

    def outcome(self, label: str, virtual_mta: str | None, path: str | None) -> None:
        return None

    def connection_opened(self, path: str) -> None:
        return None

    def connection_closed(self, path: str) -> None:
        return None

    def watch_ready(self, lengths: Callable[[], Mapping[str, int]]) -> None:
        return None

    def throttle_wait(self, seconds: float) -> None:
        return None

    def delivered(self, latency: float) -> None:
        return None


def route_label(route: EgressRoute) -> str:
    """A path's metric label: the public IP receivers see, a bounded set (configured IP
    addresses, relay servers' source IPs, external MTAs), never a destination."""
    return route.public_ip or "default"
