"""``/ga/api/v3/eng/throttling_templates`` (contract §2.8).

Templates are not VirtualMTAs (their own id sequence and name space), so they have their
own router, built by named_resource like the throttle programs' one; list, get, create,
update and delete behave as for VirtualMTAs (contract §2.2, §2.3), and each rule row can
be read and updated on its own (row_routes).
"""

from __future__ import annotations

from fastapi import APIRouter

from vmta.api.greenarrow import request_schemas
from vmta.api.greenarrow import throttling_template_document as document
from vmta.api.greenarrow import throttling_template_schemas as schemas
from vmta.api.greenarrow.fields import JsonObject
from vmta.api.greenarrow.named_resource import NamedResourceSpec, build_named_router
from vmta.api.greenarrow.request_schemas import for_update
from vmta.domain.config.virtual_mta import ThrottlingTemplate
from vmta.store.throttling_templates import ThrottlingTemplateRepository

SINGULAR = "throttling_template"
PLURAL = "throttling_templates"
PATH = f"/{PLURAL}"
ROW_ARRAYS = ("rules",)


def _strip_read_only(doc: JsonObject) -> JsonObject:
    return {k: v for k, v in doc.items() if k != "id"}


SPEC: NamedResourceSpec[ThrottlingTemplate] = NamedResourceSpec(
    singular=SINGULAR,
    plural=PLURAL,
    label="throttling template",
    noun="template",
    repository=ThrottlingTemplateRepository,
    parse=document.parse,
    render=document.render,
    strip_read_only=_strip_read_only,
    update_summary="Update a throttling template (only the fields given)",
    delete_summary="Delete a throttling template (refused while an IP address uses it)",
    record_schema=schemas.ThrottlingTemplate,
    input_schema=request_schemas.THROTTLING_TEMPLATE,
    update_schema=for_update(request_schemas.THROTTLING_TEMPLATE),
    row_arrays=ROW_ARRAYS,
    rule_schema=schemas.ThrottleRule,
)


def router() -> APIRouter:
    return build_named_router(SPEC)
