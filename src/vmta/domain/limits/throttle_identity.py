"""A throttle's identity as the Throttles API shows it: its key (what connections and
messages it counts together), a stable id derived from the key, the IP address and rule it
belongs to, and its state. Every node computes the same id for the same key, so a client
paging through ``/throttles_in_backoff`` behind a load balancer sees one list."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from vmta.domain.config.bounds import MAX_INTEGER
from vmta.domain.config.virtual_mta import IpAddress, Limits, ThrottlingTemplate
from vmta.domain.limits.throttle_backoff import Backoff
from vmta.domain.limits.throttle_rules import TEMPLATE_RULE, ThrottleMatch

ThrottleKey = tuple[str, ...]


def throttle_id(key: ThrottleKey) -> int:
    """The id of the throttle ``key``: from 1 to ``MAX_INTEGER`` (an id every list's
    ``page_token`` can carry, contract §2.2), the same wherever and whenever it is
    computed. Two keys of one node that land on one number are told apart by
    ``ThrottleBackoffs`` (the later one takes the next free number)."""
    digest = hashlib.sha256("\x00".join(key).encode()).digest()
    return int.from_bytes(digest[:8], "big") % MAX_INTEGER + 1


@dataclass(frozen=True)
class ThrottleOrigin:
    """Which IP address and which rule a throttle belongs to, as the Throttles API shows
    it. ``rule_id`` None: the IP address's or the template's default limits."""

    ip_address_id: int
    ip_address_name: str
    rule_type: str  # "ip_address" or "throttling_template": where the rule lives
    rule_id: int | None
    owner_id: int | None  # the IP address or template holding the rule
    owner_name: str | None
    domains: tuple[str, ...]  # the rule's patterns, or the one destination domain
    normal: Limits


@dataclass(frozen=True)
class ThrottleState:
    """One throttle as the API shows it: ``id`` is ``throttle_id`` of its key;
    ``limits`` are the ones in force."""

    id: int
    key: ThrottleKey
    origin: ThrottleOrigin | None
    backoff: Backoff | None
    limits: Limits | None


def throttle_origin(
    ip: IpAddress, template: ThrottlingTemplate | None, match: ThrottleMatch, domain: str
) -> ThrottleOrigin | None:
    """Which IP address and which rule a throttle belongs to (the Throttles API's
    ``ip_address`` and ``throttling_rule``). A default's ``domains`` is the one
    destination domain it counts. None for an address that is no stored IP address
    VirtualMTA (a MailerQ sending IP without one): the Throttles API cannot name it."""
    if ip.id is None:
        return None
    in_template = match.owner == TEMPLATE_RULE and template is not None
    owner_id = template.id if in_template and template is not None else ip.id
    owner_name = template.name if in_template and template is not None else ip.name
    return ThrottleOrigin(
        ip_address_id=ip.id,
        ip_address_name=ip.name,
        rule_type=match.owner,
        rule_id=None if match.rule is None else match.rule.id,
        owner_id=owner_id,
        owner_name=owner_name,
        domains=tuple(match.rule.domains) if match.rule is not None else (domain,),
        normal=match.limits,
    )
