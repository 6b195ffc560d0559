"""An egress path: where one connection goes from and to, and how it is throttled."""

from __future__ import annotations

from dataclasses import dataclass, field

from vmta.domain.config.virtual_mta import Limits
from vmta.domain.limits.throttle_identity import ThrottleOrigin
from vmta.domain.limits.throttle_program import ThrottleProgram
from vmta.domain.paths.egress_route import EgressRoute

UNLIMITED = Limits(0, 0)


@dataclass(frozen=True)
class EgressPath:
    """Everything a connection needs. Two deliveries with equal ``key`` may share a
    connection; deliveries with equal ``throttle_key`` share the throttles."""

    throttle_key: tuple[str, ...]
    destination_host: str  # name or IP as configured, for records
    destination_port: int
    route: EgressRoute
    ehlo_name: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    limits: Limits = UNLIMITED
    # (host name, IP) pairs to try in order (MX hosts by preference); empty: resolve
    # destination_host (a relay server's destination).
    candidates: tuple[tuple[str, str], ...] = ()
    # The relay server's name, for its TLS policy (VMTA_RELAY_TLS); None for MX delivery.
    relay_name: str | None = None
    # Dynamic Delivery (IP addresses only): the program of the rule that set ``limits``
    # (None: no backoff), and which IP address and rule the throttle belongs to, for the
    # Throttles API. Neither is part of ``key``: they describe the throttle, not the
    # connection. ``limits`` are the normal ones; see throttle_backoffs for backoff.
    throttle_program: ThrottleProgram | None = None
    throttle_origin: ThrottleOrigin | None = None
    # MX delivery: the site, the set of MX hosts the destination domain shares with every
    # domain hosted there (``mx:`` and the host names, sorted). Paths of one throttle and
    # one site share their connections, whatever their domains (KumoMTA's "site"): one
    # session carries mail for each domain in turn. None: the destination is the key.
    site: str | None = None
    # MX delivery from an IP address: the throttle that counts the site's connections
    # (vmta's own cap), which every domain of the site shares; ``throttle_key`` is then
    # the domain's own (its rule's limits), or this one when it has none. Paths of one
    # site share their connections, and a connection holds the slot of the domain whose
    # message it carries as well. None: ``throttle_key`` counts the connections.
    site_throttle: tuple[str, ...] | None = None

    @property
    def key(self) -> tuple[object, ...]:
        """What a connection shares: throttle (the site's, for a site), route, EHLO name,
        destination and the credential's user name. Not the MX order (equal-preference
        hosts are shuffled at each resolution, RFC 5321 §5.1, and a ready queue uses the
        newest path's order for each new connection) and not the password (the newest
        configuration wins)."""
        return (
            self.site_throttle or self.throttle_key,
            self.site or self.destination_host,
            self.destination_port,
            self.route,
            self.ehlo_name,
            self.username,
        )

    def describe(self) -> str:
        return f"{self.destination_host}:{self.destination_port} from {self.route.describe()}"
