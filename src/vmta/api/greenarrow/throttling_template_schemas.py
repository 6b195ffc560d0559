"""Documentation models of throttling templates for the OpenAPI document (API.md §2.8);
requests are read by ``throttling_template_document``, not by these models."""

from __future__ import annotations

from pydantic import BaseModel, Field

from vmta.api.greenarrow.schemas import Limits

_DOMAINS = (
    "Domain patterns, each unique ignoring case within the template: example.com,"
    " [*.]example.com (it and its subdomains), *.example.com (subdomains only), or"
    " mx:<one of these> matched against the recipient domain's MX host names"
)


class ThrottleRuleIn(BaseModel):
    domains: list[str] = Field(min_length=1, description=_DOMAINS)
    max_concurrent_connections: int = Field(ge=0, description="0 = unlimited")
    max_messages_per_hour: int = Field(ge=0, description="0 = unlimited")


class ThrottleRule(ThrottleRuleIn):
    id: int = Field(description="Read-only; a new id is given whenever rules are replaced")


class ThrottlingTemplate(BaseModel):
    id: int
    name: str
    rules: list[ThrottleRule]
    default: Limits
