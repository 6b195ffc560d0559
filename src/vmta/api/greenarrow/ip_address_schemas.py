"""Documentation models of IP address records for the OpenAPI document (contract §2.6);
requests are read by ``ip_address_document``, not by these models."""

from __future__ import annotations

from pydantic import BaseModel

from vmta.api.greenarrow.schemas import Limits, RedirectOut, RefOut
from vmta.api.greenarrow.throttling_template_schemas import ThrottleRule


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
