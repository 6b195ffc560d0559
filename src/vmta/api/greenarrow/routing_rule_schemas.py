"""Documentation models of routing rules and of the cross-type ``/virtual_mtas`` endpoints
for the OpenAPI document (not validators: requests are read by
``routing_rule_document`` and ``virtual_mtas``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, RootModel

from vmta.api.greenarrow.schemas import RefOut

RandomizationType = Literal["random", "message_constant", "email_address_constant"]
_RANDOMIZATION = (
    "random: a new choice for every delivery attempt; message_constant: one choice per"
    " message, kept across retries; email_address_constant: the same recipient address"
    " always gets the same choice while the entries are unchanged"
)
_PORTION = "A relative weight: 1 and 1 is 50/50, 30 and 70 is 30/70"
_DOMAINS = (
    "example.com (exactly), [*.]example.com (it and every subdomain), *.example.com"
    " (subdomains only); unique ignoring case within the rule"
)


class DeliverThroughOut(BaseModel):
    virtual_mta: RefOut
    portion_of_mail: float = Field(description=_PORTION)


class DistributionOut(BaseModel):
    randomization_type: RandomizationType = Field(description=_RANDOMIZATION)
    deliver_through: list[DeliverThroughOut]


class DomainOverrideOut(BaseModel):
    id: int
    domains: list[str] = Field(description=_DOMAINS)
    randomization_type: RandomizationType
    deliver_through: list[DeliverThroughOut]


class RoutingRule(BaseModel):
    id: int
    name: str
    default: DistributionOut
    domain_overrides: list[DomainOverrideOut]


class VirtualMtaSummary(BaseModel):
    type: Literal["ip_address", "relay_server", "routing_rule"]
    id: int
    name: str


class UsedBy(BaseModel):
    """One record that sends through the VirtualMTA. The default VirtualMTA setting is not
    a record: its entry has null id and name."""

    type: Literal["ip_address", "relay_server", "routing_rule", "default_virtual_mta"]
    id: int | None
    name: str | None


class UsedByList(RootModel[list[UsedBy]]):
    pass


class DefaultVirtualMta(RootModel[VirtualMtaSummary | None]):
    """The default VirtualMTA, or null when none is set."""
