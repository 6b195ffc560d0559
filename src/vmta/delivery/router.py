"""Choosing how a message goes out: VirtualMTA → redirect → routing rule → egress path
(ARCHITECTURE.md, "routing"). The rules are the control plane's (API.md §2.4-2.7)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vmta.delivery.config_view import ConfigView
from vmta.delivery.path import EgressPath
from vmta.domain.egress_route import EgressRoute
from vmta.domain.external_mta import route_for_source
from vmta.domain.virtual_mta import IpAddress, RelayServer, VirtualMta
from vmta.store.spool import Job

MAX_REDIRECTS = 32


@dataclass(frozen=True)
class Deliver:
    path: EgressPath
    chosen: str | None  # the VirtualMTA the message asked for (or the default)
    effective: str | None  # the one that carries it, after redirects and rules
    memory: dict[str, Any] | None = None  # routing choices to keep for retries


@dataclass(frozen=True)
class Hold:
    """Not delivered now. ``attempted`` holds count as attempts (a paused IP);
    the others are waiting for configuration (no VirtualMTA applies)."""

    reason: str
    retry_in: float
    attempted: bool = False
    chosen: str | None = None
    effective: str | None = None


Decision = Deliver | Hold

WAIT_FOR_CONFIG = 60.0


class Router:
    def __init__(self, config: ConfigView) -> None:
        self.config = config

    async def egress_route(self, source_ip: str | None) -> EgressRoute:
        """How a connection from ``source_ip`` leaves: through the external MTA whose
        public_ip it is, or bound directly (API.md §3.2)."""
        return route_for_source(source_ip, await self.config.external_mtas())

    async def decide(self, job: Job) -> Decision:
        chosen: VirtualMta | None = None
        if job.vmta_selector:
            chosen = await self.config.by_selector(job.vmta_selector)
        if chosen is None:
            # GreenArrow's rule: an unknown or absent selector means the default VirtualMTA.
            chosen = await self.config.default()
        if chosen is None:
            asked = f" ({job.vmta_selector!r} does not exist)" if job.vmta_selector else ""
            return Hold(
                reason="No VirtualMTA applies: the message names none"
                + asked
                + " and no default VirtualMTA is set.",
                retry_in=WAIT_FOR_CONFIG,
            )
        return await self._through(chosen, chosen.name)

    async def _through(self, vmta: VirtualMta, chosen: str) -> Decision:
        seen: set[int] = set()
        current = vmta
        while True:
            if isinstance(current, IpAddress) and current.delivery_paused:
                # A pause beats a redirect (API.md §2.6).
                return Hold(
                    reason="Delivery paused.",
                    retry_in=WAIT_FOR_CONFIG,
                    attempted=True,
                    chosen=chosen,
                    effective=current.name,
                )
            redirect = getattr(current, "redirect", None)
            if redirect is None or redirect.id is None:
                break
            if current.id is not None:
                seen.add(current.id)
            if redirect.id in seen or len(seen) > MAX_REDIRECTS:
                return Hold(
                    reason="Redirects form a loop.", retry_in=WAIT_FOR_CONFIG, chosen=chosen
                )
            target = await self.config.virtual_mta(redirect.id)
            if target is None:
                break
            current = target
        if isinstance(current, RelayServer):
            route = await self.egress_route(current.source_ip)
            return Deliver(path=relay_path(current, route), chosen=chosen, effective=current.name)
        return Hold(
            reason=f"Delivery through {type(current).__name__} VirtualMTAs is not available yet.",
            retry_in=WAIT_FOR_CONFIG,
            chosen=chosen,
            effective=current.name,
        )


def relay_path(relay: RelayServer, route: EgressRoute) -> EgressPath:
    """A relay server's path: its destination, from its source IP (through an external
    MTA when the source IP is one), with its EHLO name and credentials (seed 001),
    throttled per relay server."""
    use_auth = relay.uses_auth
    return EgressPath(
        throttle_key=("relay_server", str(relay.id)),
        destination_host=relay.destination_hostname,
        destination_port=relay.destination_port,
        route=route,
        ehlo_name=relay.source_hostname,
        username=relay.username if use_auth else None,
        password=relay.password if use_auth else None,
        limits=relay.throttle_limits,
    )
