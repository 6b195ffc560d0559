"""The VirtualMTA records of the control plane (GreenArrow v3 model, contract §2).

These are plain values. Parsing them from request bodies lives at the HTTP edge; storing
them lives in ``vmta.store``; choosing a path for a message lives in ``vmta.domain.paths``
(the rules) and ``vmta.delivery.routing`` (the router).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class VirtualMtaType(StrEnum):
    IP_ADDRESS = "ip_address"
    RELAY_SERVER = "relay_server"
    ROUTING_RULE = "routing_rule"


class RandomizationType(StrEnum):
    RANDOM = "random"  # a new choice for every delivery attempt
    MESSAGE_CONSTANT = "message_constant"  # one choice per message, kept across retries
    EMAIL_ADDRESS_CONSTANT = "email_address_constant"  # one choice per recipient address


@dataclass(frozen=True)
class Ref:
    """A reference to a VirtualMTA or template. On input ``id`` wins over ``name``;
    a resolved reference carries all of ``type``, ``id`` and ``name``."""

    id: int | None = None
    name: str | None = None
    type: VirtualMtaType | None = None


@dataclass(frozen=True)
class Limits:
    """Throttle limits; 0 means unlimited."""

    max_concurrent_connections: int
    max_messages_per_hour: int


@dataclass
class RelayServer:
    name: str
    source_ip: str
    source_hostname: str
    destination_hostname: str
    destination_port: int
    username: str | None
    password: str | None
    throttle_limits: Limits
    redirect: Ref | None = None
    id: int | None = None

    @property
    def uses_auth(self) -> bool:
        """Authentication is used only when both username and password are set (contract §2.5)."""
        return self.username is not None and self.password is not None


@dataclass
class IpAddress:
    name: str
    ip: str
    hostname: str
    delivery_paused: bool = False
    redirect: Ref | None = None
    throttling_template: Ref | None = None
    default: Limits | None = None
    id: int | None = None
    # The address's own throttling rules; they win over the template's (contract §2.6).
    rules: list[ThrottleRule] = field(default_factory=list)


@dataclass(frozen=True)
class DeliverThrough:
    virtual_mta: Ref
    portion_of_mail: float


@dataclass
class Distribution:
    randomization_type: RandomizationType
    deliver_through: list[DeliverThrough]


@dataclass
class DomainOverride:
    domains: list[str]
    distribution: Distribution
    id: int | None = None


@dataclass
class RoutingRule:
    name: str
    default: Distribution
    domain_overrides: list[DomainOverride] = field(default_factory=list)
    id: int | None = None

    def targets(self) -> list[Ref]:
        """Every VirtualMTA this rule may send through, default first."""
        refs = [entry.virtual_mta for entry in self.default.deliver_through]
        for override in self.domain_overrides:
            refs.extend(entry.virtual_mta for entry in override.distribution.deliver_through)
        return refs


@dataclass
class ThrottleRule:
    domains: list[str]
    limits: Limits
    id: int | None = None
    throttle_program: Ref | None = None  # Dynamic Delivery (contract §2.10)


@dataclass
class ThrottlingTemplate:
    name: str
    default: Limits
    rules: list[ThrottleRule] = field(default_factory=list)
    id: int | None = None


@dataclass(frozen=True)
class UsedBy:
    """One record that sends through a VirtualMTA (contract §2.9). ``type`` is a
    VirtualMtaType value or ``default_virtual_mta``; the latter is the server's setting,
    not a record, so it has no id or name."""

    type: str
    id: int | None = None
    name: str | None = None


DEFAULT_VIRTUAL_MTA = "default_virtual_mta"

VirtualMta = RelayServer | IpAddress | RoutingRule


def type_of(vmta: VirtualMta) -> VirtualMtaType:
    if isinstance(vmta, RelayServer):
        return VirtualMtaType.RELAY_SERVER
    if isinstance(vmta, IpAddress):
        return VirtualMtaType.IP_ADDRESS
    return VirtualMtaType.ROUTING_RULE
