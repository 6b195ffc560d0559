"""Documentation models of throttling templates for the OpenAPI document (API.md §2.8);
requests are read by ``throttling_template_document``, not by these models."""

from __future__ import annotations

from pydantic import BaseModel, Field

from vmta.api.greenarrow.schemas import Limits, RefIn, RefOut

_DOMAINS = (
    "Domain patterns, each unique ignoring case within the template: example.com,"
    " [*.]example.com (it and its subdomains), *.example.com (subdomains only), or"
    " mx:<one of these> matched against the recipient domain's MX host names"
)


class ThrottleRuleIn(BaseModel):
    id: int | None = Field(
        default=None,
        description="On update: the id of one of the record's rules, updated in place and"
        " keeping its id; absent or null: a new rule. Ignored on create.",
    )
    domains: list[str] = Field(min_length=1, description=_DOMAINS)
    max_concurrent_connections: int = Field(ge=0, description="0 = unlimited")
    max_messages_per_hour: int = Field(ge=0, description="0 = unlimited")
    throttle_program: RefIn | None = Field(
        default=None, description="Dynamic Delivery program of this rule; id wins over name"
    )


class ThrottleRule(BaseModel):
    id: int
    domains: list[str]
    max_concurrent_connections: int
    max_messages_per_hour: int
    throttle_program: RefOut | None


class ThrottlingTemplateIn(BaseModel):
    """Required on create: name, default. On update, only the fields given change; a
    ``rules`` array replaces every rule."""

    name: str = Field(
        min_length=1, max_length=200, description="Unique ignoring case among templates"
    )
    rules: list[ThrottleRuleIn] = Field(default_factory=list, max_length=250)
    default: Limits
    throttle_program: None = Field(
        default=None, description="Accepted only as null; programs belong to rules"
    )


class ThrottlingTemplate(BaseModel):
    id: int
    name: str
    rules: list[ThrottleRule]
    default: Limits
