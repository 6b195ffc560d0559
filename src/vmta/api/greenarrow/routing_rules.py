"""``/ga/api/v3/eng/routing_rules`` (contract §2.7)."""

from __future__ import annotations

from fastapi import APIRouter

from vmta.api.greenarrow import request_schemas
from vmta.api.greenarrow import routing_rule_document as document
from vmta.api.greenarrow import routing_rule_schemas as schemas
from vmta.api.greenarrow.virtual_mta_resource import ResourceSpec, build_router
from vmta.domain.config.virtual_mta import VirtualMtaType

SPEC = ResourceSpec(
    kind=VirtualMtaType.ROUTING_RULE,
    singular="routing_rule",
    plural="routing_rules",
    label="routing rule",
    label_plural="routing rules",
    article="a",
    parse=document.parse,
    render=document.render,
    atomic=document.ATOMIC,
    strip_read_only=document.strip_read_only,
    row_arrays=("domain_overrides",),
    record_schema=schemas.RoutingRule,
    input_schema=request_schemas.ROUTING_RULE,
)


def router() -> APIRouter:
    return build_router(SPEC)
