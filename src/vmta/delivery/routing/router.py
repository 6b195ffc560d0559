"""Choosing how a recipient's mail goes out: VirtualMTA → redirect → routing rule →
IP address or relay server → egress path (ARCHITECTURE.md, "routing"). The meaning of each
record is the control plane's (contract §2.4-2.8)."""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from vmta.delivery.routing.config_view import ConfigView, DeliveryControls
from vmta.delivery.routing.egress_health import EgressHealth
from vmta.delivery.routing.mx_resolver import DestinationRejected, DnsUnavailable, MxResolver
from vmta.domain.attempts.delivery_outcome import ReplyLine
from vmta.domain.attempts.message_retry_policy import first_attempt_wait
from vmta.domain.attempts.spool_records import Job
from vmta.domain.clock import Clock, SystemClock
from vmta.domain.config.external_mta import route_for_source
from vmta.domain.config.virtual_mta import IpAddress, RelayServer, VirtualMta
from vmta.domain.limits.throttle_identity import throttle_origin
from vmta.domain.limits.throttle_rules import ThrottleTable, ip_throttle_key
from vmta.domain.paths.delivery_controls import AttemptFacts, first_applicable, soonest_expiry
from vmta.domain.paths.egress_path import UNLIMITED, EgressPath
from vmta.domain.paths.egress_route import EgressProtocol, EgressRoute, direct_route
from vmta.domain.paths.mail_loops import LOOP_CODE, is_local_only, local_only_text
from vmta.domain.paths.routing_choice import RoutingUnresolved, recipient_domain, resolve_nested

WAIT_FOR_CONFIG = 60.0  # how soon a waiting or paused recipient is looked at again
# The waiting_reason of mail a pause holds starts so (delivery/engine/pause_release.py finds it).
PAUSED_REASON_PREFIX = "Paused ("


@dataclass(frozen=True)
class Deliver:
    path: EgressPath
    chosen: str | None  # the VirtualMTA the message asked for (or the default)
    effective: str | None  # the one that carries it, after redirects and rules
    memory: dict[str, Any] | None = None  # routing choices to keep for retries
    effective_id: int | None = None  # the id of the IP address or relay server that sends


@dataclass(frozen=True)
class Hold:
    """Not delivered now, and not a failure of the recipient. ``attempted`` holds count
    as attempts (a paused IP); the others wait for configuration."""

    reason: str
    retry_in: float = WAIT_FOR_CONFIG
    attempted: bool = False
    chosen: str | None = None
    effective: str | None = None


@dataclass(frozen=True)
class Refuse:
    """The attempt failed before any connection: ``reply.code`` says whether it is
    temporary (4xx: retry with backoff) or permanent (5xx: fail, bounce)."""

    reply: ReplyLine
    chosen: str | None = None
    effective: str | None = None


Decision = Deliver | Hold | Refuse


@dataclass(frozen=True)
class RouterSettings:
    hostname: str  # EHLO name when no VirtualMTA applies
    delivery_port: int = 25  # the port of MX hosts (configurable for tests)
    recheck: float = WAIT_FOR_CONFIG  # seconds before a paused or waiting recipient is retried
    # MX answers and address literals that are loopback, unspecified or link-local are
    # not used unless this is set (tests publishing loopback MX hosts; domain/paths/mail_loops).
    mx_allow_loopback: bool = False


class Router:
    def __init__(
        self,
        config: ConfigView,
        resolver: MxResolver,
        settings: RouterSettings,
        rng: random.Random | None = None,
        health: EgressHealth | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        self.resolver = resolver
        self.settings = settings
        self.rng = rng or random.Random()
        self.health = health or EgressHealth()
        self.clock = clock or SystemClock()

    def _suspended(self, decision: Deliver) -> Hold | None:
        """Mail for a suspended external MTA waits, without burning attempts."""
        route = decision.path.route
        if route.protocol is EgressProtocol.DIRECT or not route.public_ip:
            return None
        left = self.health.suspended(route.public_ip, self.clock.now())
        if left is None:
            return None
        return Hold(
            reason=f"External MTA {route.public_ip} is suspended for {left:.0f} s more after"
            " repeated connection failures through it.",
            retry_in=left,
            chosen=decision.chosen,
            effective=decision.effective,
        )

    async def egress_route(self, source_ip: str | None) -> EgressRoute:
        """How a connection from ``source_ip`` leaves: through the external MTA whose
        public_ip it is, or bound directly (contract §3.2)."""
        return route_for_source(source_ip, await self.config.external_mtas())

    async def decide(self, job: Job) -> Decision:
        """Suppressions first (the recipient is never tried), then the message's own
        first-attempt time, then the route, then pauses and forced errors on that route
        (contract §3.4-3.6), then the health of an external MTA."""
        controls = await self.config.delivery_controls()
        suppressed = await self.config.suppression(job.address, controls)
        if suppressed is not None:
            return Refuse(ReplyLine(suppressed.code, suppressed.reply_text(), stage="suppression"))
        wait = first_attempt_wait(job.mq_options, job.attempts, self.clock.now())
        if wait > 0:
            return Hold(reason="Waiting for the message's nextattempt time.", retry_in=wait)
        decision = await self._decide(job, controls)
        if not isinstance(decision, Deliver):
            return decision
        controlled = self._controlled(job, decision, controls)
        if controlled is not None and not isinstance(controlled, Deliver):
            return controlled
        usable = controlled or decision  # possibly with fewer MX candidates
        return self._suspended(usable) or usable

    def _controlled(
        self, job: Job, decision: Deliver, controls: DeliveryControls
    ) -> Decision | None:
        """A forced error or a pause that applies to this attempt (None: neither does).
        A forced error wins over a pause: it is an explicit order to end the attempt,
        whereas a pause only holds mail until someone decides. A control naming a remote
        ``ip`` takes that address out of the candidates; the attempt is stopped only when
        no candidate is left."""
        options = job.mq_options or {}
        source = decision.path.route.public_ip or decision.path.route.bind_ip
        pools = set()
        if source is not None and source in controls.pool_of_ip:
            pools.add(controls.pool_of_ip[source])
        if isinstance(options.get("pool"), str) and not options.get("ips"):
            pools.add(options["pool"])
        facts = AttemptFacts(
            source_ip=source,
            domain=recipient_domain(job.address),
            pools=frozenset(pools),
            tags=frozenset(t for t in options.get("tags") or () if isinstance(t, str)),
        )
        remote = [address for _host, address in decision.path.candidates]
        now = self.clock.now()
        forced = first_applicable(controls.errors, facts, remote, now)
        if forced.control is not None:
            error = forced.control
            return Refuse(
                ReplyLine(error.code, error.reply_text(), stage="process"),
                decision.chosen,
                decision.effective,
            )
        paused = first_applicable(controls.pauses, facts, forced.remaining, now)
        if paused.control is not None:
            left = soonest_expiry([paused.control], now)
            described = ", ".join(f"{k} {v}" for k, v in paused.control.matcher.as_dict().items())
            return Hold(
                reason=f"{PAUSED_REASON_PREFIX}{described or 'everything'}).",
                retry_in=min(self.settings.recheck, left) if left else self.settings.recheck,
                chosen=decision.chosen,
                effective=decision.effective,
            )
        if remote and len(paused.remaining) < len(remote):
            kept = set(paused.remaining)
            candidates = tuple(c for c in decision.path.candidates if c[1] in kept)
            return replace(decision, path=replace(decision.path, candidates=candidates))
        return None

    def _sending_ips(self, job: Job, controls: DeliveryControls) -> Sequence[str] | str | None:
        """The sending IPs a MailerQ message chose (contract §3.6): its ``ips``, else the
        current members of its ``pool``; a pool with no member is a reason to wait (a
        string). None: the message chose none, VirtualMTA selection applies. A GreenArrow
        selector header wins over MailerQ's choice."""
        options = job.mq_options or {}
        if job.vmta_selector:
            return None
        ips = options.get("ips")
        if isinstance(ips, list) and ips:
            return [ip for ip in ips if isinstance(ip, str)]
        pool = options.get("pool")
        if isinstance(pool, str) and pool:
            members = controls.members(pool)
            return members or f"Pool {pool} has no addresses (or does not exist)."
        return None

    async def _from_chosen_ip(self, job: Job, ips: Sequence[str]) -> Decision:
        """Straight to the recipient domain's MX hosts from one of ``ips``: with the EHLO
        name and throttles of the IP address VirtualMTA that has that address, else with
        vmta's hostname and no throttle of its own."""
        ip = ips[0] if len(ips) == 1 else self.rng.choice(list(ips))
        found = await self.config.ip_address_with(ip)
        if found is not None:
            if found.delivery_paused:
                return Hold(
                    reason="Delivery paused.",
                    retry_in=self.settings.recheck,
                    attempted=True,
                    effective=found.name,
                )
            return await self._through_ip(job, found, None, None)
        bare = IpAddress(name=f"ip {ip}", ip=ip, hostname=self.settings.hostname)
        decision = await self._through_ip(job, bare, None, None)
        if isinstance(decision, Deliver):
            return replace(decision, effective=None, effective_id=None)
        if isinstance(decision, Refuse):
            return replace(decision, effective=None)
        return decision

    async def _decide(self, job: Job, controls: DeliveryControls) -> Decision:
        sending = self._sending_ips(job, controls)
        if isinstance(sending, str):
            return Hold(reason=sending, retry_in=self.settings.recheck)
        if sending:
            return await self._from_chosen_ip(job, sending)
        chosen: VirtualMta | None = None
        if job.vmta_selector:
            chosen = await self.config.by_selector(job.vmta_selector)
        if chosen is None:
            # GreenArrow's rule: an unknown or absent selector means the default VirtualMTA.
            chosen = await self.config.default()
        if chosen is None:
            # No VirtualMTA at all: deliver as any MTA would, to the domain's MX hosts from
            # the host's default source address.
            return await self._direct(job)
        memory: dict[str, Any] = dict(job.routing_memory or {})
        try:
            resolution = await resolve_nested(
                chosen, job.address, self.config.lookup, rng=self.rng, memory=memory
            )
        except RoutingUnresolved as exc:
            return Hold(reason=str(exc), retry_in=self.settings.recheck, chosen=chosen.name)
        target = resolution.target
        kept = memory if memory != (job.routing_memory or {}) else None
        if isinstance(target, IpAddress) and target.delivery_paused:
            # A pause beats a redirect (contract §2.6): every attempt is deferred.
            return Hold(
                reason="Delivery paused.",
                retry_in=self.settings.recheck,
                attempted=True,
                chosen=chosen.name,
                effective=target.name,
            )
        if isinstance(target, RelayServer):
            route = await self.egress_route(target.source_ip)
            return Deliver(relay_path(target, route), chosen.name, target.name, kept, target.id)
        return await self._through_ip(job, target, chosen.name, kept)

    async def _destination(self, job: Job) -> tuple[str, Any] | Refuse:
        domain = recipient_domain(job.address)
        try:
            return domain, await self.resolver.resolve(domain)
        except DestinationRejected as exc:
            return Refuse(ReplyLine(550, f"{exc.status} {exc}", stage="dns"))
        except DnsUnavailable as exc:
            return Refuse(ReplyLine(451, f"{exc.status} {exc}", stage="dns"))

    async def _through_ip(
        self, job: Job, ip: IpAddress, chosen: str | None, memory: dict[str, Any] | None
    ) -> Decision:
        found = await self._destination(job)
        if isinstance(found, Refuse):
            return Refuse(found.reply, chosen, ip.name)
        domain, destination = found
        route = await self.egress_route(ip.ip)
        template = None
        if ip.throttling_template is not None and ip.throttling_template.id is not None:
            template = await self.config.template(ip.throttling_template.id)
        # The address's own rules win over its template's (contract §2.6).
        match = ThrottleTable(template, ip.rules).match(domain, destination.mx_names, ip.default)
        program = None
        if match.program is not None and match.program.id is not None:
            program = await self.config.throttle_program(match.program.id)
        candidates = self._usable(domain, _candidates(destination, route))
        if isinstance(candidates, Refuse):
            return Refuse(candidates.reply, chosen, ip.name)
        if not candidates:
            return Refuse(
                ReplyLine(
                    451, f"4.4.4 {domain} has no address reachable from {ip.ip}", stage="dns"
                ),
                chosen,
                ip.name,
            )
        site = site_of(domain, destination.mx_names)
        # Every domain of the site shares its sessions, counted by the site's throttle
        # (vmta's own cap on connections). A domain with limits keeps its own throttle as
        # well: a session holds its slot, and its pacing, while it carries its mail.
        site_throttle = ("ip", route.public_ip or ip.ip, "site", site)
        throttle_key = ip_throttle_key(route.public_ip or ip.ip, match)
        if match.limits == UNLIMITED and program is None:
            throttle_key = site_throttle  # nothing to count per domain
        path = EgressPath(
            throttle_key=throttle_key,
            destination_host=domain,
            destination_port=self.settings.delivery_port,
            route=route,
            ehlo_name=ip.hostname,
            limits=match.limits,
            candidates=candidates,
            throttle_program=program,
            throttle_origin=throttle_origin(ip, template, match, domain),
            site=site,
            site_throttle=site_throttle,
        )
        return Deliver(path, chosen, ip.name, memory, ip.id)

    def _usable(
        self, domain: str, candidates: tuple[tuple[str, str], ...]
    ) -> tuple[tuple[str, str], ...] | Refuse:
        """The candidates without loopback, unspecified and link-local addresses (unless
        allowed); a permanent refusal when those were all there was: no host of the
        internet has such an address, and mail sent there would reach this host or its
        neighbour, not the domain (a mail loop; domain/paths/mail_loops.py)."""
        if self.settings.mx_allow_loopback:
            return candidates
        kept = tuple(pair for pair in candidates if not is_local_only(pair[1]))
        if candidates and not kept:
            addresses = [address for _, address in candidates]
            return Refuse(ReplyLine(LOOP_CODE, local_only_text(domain, addresses)))
        return kept

    async def _direct(self, job: Job) -> Decision:
        found = await self._destination(job)
        if isinstance(found, Refuse):
            return found
        domain, destination = found
        route = direct_route(None)
        candidates = self._usable(domain, _candidates(destination, route))
        if isinstance(candidates, Refuse):
            return candidates
        if not candidates:
            return Refuse(ReplyLine(451, f"4.4.4 {domain} has no address", stage="dns"))
        site = site_of(domain, destination.mx_names)
        path = EgressPath(
            throttle_key=("direct", site),  # no limits: the site's domains share sessions
            destination_host=domain,
            destination_port=self.settings.delivery_port,
            route=route,
            ehlo_name=self.settings.hostname,
            limits=UNLIMITED,
            candidates=candidates,
            site=site,
        )
        return Deliver(path, None, None)


def site_of(domain: str, mx_names: Sequence[str]) -> str:
    """The site of a domain: its set of MX hosts (``mx:`` and the names, sorted, so that
    the random order of equal preferences does not matter); a domain without MX records
    (or an address literal) is a site of its own."""
    if not mx_names:
        return domain
    return "mx:" + ",".join(sorted(set(mx_names)))


def _candidates(destination: Any, route: EgressRoute) -> tuple[tuple[str, str], ...]:
    """(host name, address) pairs in the order to try them (MX preference, RFC 5321 §5.1),
    keeping only addresses of the family the route binds (an IPv4 source cannot reach an
    IPv6 address). Through a proxy, the proxy connects, so every family is kept."""
    version = None
    if route.bind_ip and not route.tunnelled:
        version = ipaddress.ip_address(route.bind_ip).version
    pairs: list[tuple[str, str]] = []
    for host in destination.hosts:
        for address in host.addresses:
            if version is None or ipaddress.ip_address(address).version == version:
                pairs.append((host.name, address))
    return tuple(pairs)


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
        relay_name=relay.name,
    )
