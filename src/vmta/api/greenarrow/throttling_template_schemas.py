"""Documentation models of throttling templates for the OpenAPI document (contract §2.8);
requests are read by ``throttling_template_document``, not by these models."""

from __future__ import annotations

from pydantic import BaseModel

from vmta.api.greenarrow.schemas import Limits, RefOut

_DOMAINS = (
    "Domain patterns, each unique ignoring case within the template: example.com,"
    " [*.]example.com (it and its subdomains), *.example.com (subdomains only), or"
    " mx:<one of these> matched against the recipient domain's MX host names"
)


class ThrottleRule(BaseModel):
    id: int
    domains: list[str]
    max_concurrent_connections: int
    max_messages_per_hour: int
    throttle_program: RefOut | None


class ThrottlingTemplate(BaseModel):
    id: int
    name: str
    rules: list[ThrottleRule]
    default: Limits
