"""``/ga/api/v3/eng/ip_addresses`` (contract §2.6)."""

from __future__ import annotations

from fastapi import APIRouter

from vmta.api.greenarrow import ip_address_document as document
from vmta.api.greenarrow import ip_address_schemas as schemas
from vmta.api.greenarrow import request_schemas
from vmta.api.greenarrow.throttling_template_schemas import ThrottleRule
from vmta.api.greenarrow.virtual_mta_resource import ResourceSpec, build_router
from vmta.domain.config.virtual_mta import VirtualMtaType

SPEC = ResourceSpec(
    kind=VirtualMtaType.IP_ADDRESS,
    singular="ip_address",
    plural="ip_addresses",
    label="IP address",
    label_plural="IP addresses",
    article="an",
    parse=document.parse,
    render=document.render,
    atomic=document.ATOMIC,
    strip_read_only=document.strip_read_only,
    filters=("name", "ip", "hostname"),
    row_arrays=("rules",),
    rule_schema=ThrottleRule,
    record_schema=schemas.IpAddress,
    input_schema=request_schemas.IP_ADDRESS,
)


def router() -> APIRouter:
    return build_router(SPEC)
