"""Documentation models of IP address records for the OpenAPI document (API.md §2.6);
requests are read by ``ip_address_document``, not by these models."""

from __future__ import annotations

from pydantic import BaseModel, Field

from vmta.api.greenarrow.schemas import Limits, RedirectOut, RefIn, RefOut
from vmta.api.greenarrow.throttling_template_schemas import ThrottleRule, ThrottleRuleIn


class IpAddressIn(BaseModel):
    """Required on create: name, ip, hostname. On update, only the fields given change;
    ``redirect`` and ``throttling_template`` are replaced whole, null clears them."""

    name: str = Field(min_length=1, max_length=200)
    ip: str = Field(description="IPv4, dotted decimal; need not be a local address")
    hostname: str = Field(
        min_length=1,
        max_length=200,
        description="EHLO name: DNS labels of letters, digits and '-', not an IP address",
    )
    delivery_paused: bool = Field(
        default=False, description="While true, every attempt is deferred: 'Delivery paused.'"
    )
    redirect: RefIn | None = None
    throttling_template: RefIn | None = None
    default: Limits | None = Field(
        default=None, description="Overrides the throttling template's default limits"
    )
    rules: list[ThrottleRuleIn] = Field(
        default_factory=list,
        max_length=250,
        description="The address's own throttling rules; they win over the template's",
    )


class IpAddress(BaseModel):
    id: int
    name: str
    ip: str
    hostname: str
    delivery_paused: bool
    redirect: RedirectOut | None
    throttling_template: RefOut | None
    default: Limits | None
    rules: list[ThrottleRule]
