"""``/ga/api/v3/eng/relay_servers`` (seed 001, contract §2.5)."""

from __future__ import annotations

from fastapi import APIRouter

from vmta.api.greenarrow import relay_server_document as document
from vmta.api.greenarrow import request_schemas, schemas
from vmta.api.greenarrow.fields import JsonObject
from vmta.api.greenarrow.virtual_mta_resource import ResourceSpec, build_router
from vmta.domain.config.virtual_mta import VirtualMtaType


def _strip_read_only(doc: JsonObject) -> JsonObject:
    return {k: v for k, v in doc.items() if k != "id"}


SPEC = ResourceSpec(
    kind=VirtualMtaType.RELAY_SERVER,
    singular="relay_server",
    plural="relay_servers",
    label="relay server",
    label_plural="relay servers",
    article="a",
    parse=document.parse,
    render=document.render,
    atomic=document.ATOMIC,
    strip_read_only=_strip_read_only,
    record_schema=schemas.RelayServer,
    input_schema=request_schemas.RELAY_SERVER,
)


def router() -> APIRouter:
    return build_router(SPEC)
