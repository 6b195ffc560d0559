"""``/ga/api/v3/eng/throttling_templates`` (API.md §2.8).

Templates are not VirtualMTAs (their own id sequence and name space), so they have their
own small router; list, get, create, update and delete behave as for VirtualMTAs
(API.md §2.2, §2.3).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from vmta.api.dependencies import store_of
from vmta.api.greenarrow import request_schemas
from vmta.api.greenarrow import throttling_template_document as document
from vmta.api.greenarrow import throttling_template_schemas as schemas
from vmta.api.greenarrow.envelope import read_wrapped, success
from vmta.api.greenarrow.fields import JsonObject, merge_patch, parse_record
from vmta.api.greenarrow.pagination import page_request, paginated
from vmta.api.greenarrow.request_schemas import for_update
from vmta.api.greenarrow.virtual_mta_resource import parse_record_id
from vmta.api.openapi import PAGE_PARAMETERS, envelope_responses, request_body, with_query
from vmta.domain.errors import NotFound, PartialRecord
from vmta.domain.virtual_mta import Ref, ThrottlingTemplate
from vmta.store.throttling_templates import ThrottlingTemplateRepository

SINGULAR = "throttling_template"
PLURAL = "throttling_templates"
PATH = f"/{PLURAL}"


def _strip_read_only(doc: JsonObject) -> JsonObject:
    return {k: v for k, v in doc.items() if k != "id"}


def _get(repo: ThrottlingTemplateRepository, template_id: int) -> ThrottlingTemplate:
    record = repo.get(template_id)
    if record is None:
        raise NotFound(f"No throttling template with id {template_id}.")
    return record


def _list_item(ref: Ref) -> dict[str, Any]:
    return {"id": ref.id, "name": ref.name}


def router() -> APIRouter:
    api = APIRouter(tags=[PLURAL])

    @api.get(
        PATH,
        summary="List throttling templates",
        responses=envelope_responses(PLURAL, list_of=True),
        openapi_extra=with_query({}, *PAGE_PARAMETERS),
    )
    async def list_templates(request: Request) -> JSONResponse:
        page = page_request(request.query_params, PLURAL)
        store = store_of(request)

        def work() -> dict[str, Any]:
            with store.read() as conn:
                repo = ThrottlingTemplateRepository(conn)
                return paginated(
                    PLURAL,
                    page,
                    PLURAL,
                    fetch=lambda after, offset, limit: repo.page(
                        after_id=after, offset=offset, limit=limit
                    ),
                    count=repo.count,
                    render=_list_item,
                    id_of=lambda ref: int(ref.id),
                )

        return success(await run_in_threadpool(work))

    @api.get(
        PATH + "/{record_id}",
        summary="Get one throttling template",
        responses=envelope_responses(SINGULAR, schema=schemas.ThrottlingTemplate),
    )
    async def get_template(record_id: str, request: Request) -> JSONResponse:
        rid = parse_record_id(record_id)
        store = store_of(request)

        def work() -> dict[str, Any]:
            with store.read() as conn:
                return {SINGULAR: document.render(_get(ThrottlingTemplateRepository(conn), rid))}

        return success(await run_in_threadpool(work))

    @api.post(
        PATH,
        summary="Create a throttling template",
        openapi_extra=request_body(SINGULAR, request_schemas.THROTTLING_TEMPLATE),
        responses=envelope_responses(SINGULAR, schema=schemas.ThrottlingTemplate),
    )
    async def create_template(request: Request) -> JSONResponse:
        doc = _strip_read_only(read_wrapped(await request.body(), SINGULAR))
        store = store_of(request)

        def store_problems(partial: PartialRecord) -> list[str]:
            # Only a refused document gets here, so it needs no write transaction.
            with store.read() as conn:
                return ThrottlingTemplateRepository(conn).partial_problems(partial, own_id=None)

        def work() -> dict[str, Any]:
            template = parse_record(document.parse, doc, store_problems=store_problems)
            with store.write() as conn:
                repo = ThrottlingTemplateRepository(conn)
                new_id = repo.insert(template)
                return {SINGULAR: document.render(_get(repo, new_id))}

        return success(await run_in_threadpool(work))

    @api.put(
        PATH + "/{record_id}",
        summary="Update a throttling template (only the fields given)",
        openapi_extra=request_body(SINGULAR, for_update(request_schemas.THROTTLING_TEMPLATE)),
        responses=envelope_responses(SINGULAR, schema=schemas.ThrottlingTemplate),
    )
    async def update_template(record_id: str, request: Request) -> JSONResponse:
        rid = parse_record_id(record_id)
        patch = _strip_read_only(read_wrapped(await request.body(), SINGULAR))
        store = store_of(request)

        def work() -> dict[str, Any]:
            with store.write() as conn:
                repo = ThrottlingTemplateRepository(conn)
                current = _get(repo, rid)
                merged = merge_patch(_strip_read_only(document.render(current)), patch)
                template = parse_record(
                    document.parse,
                    merged,
                    store_problems=lambda partial: repo.partial_problems(partial, own_id=rid),
                )
                if "rules" not in patch:
                    # The rules are unchanged, so they keep their ids; a given ``rules``
                    # array replaces them all and its ids are ignored (API.md §2.3).
                    template = replace(template, rules=current.rules)
                repo.update(rid, template)
                return {SINGULAR: document.render(_get(repo, rid))}

        return success(await run_in_threadpool(work))

    @api.delete(
        PATH + "/{record_id}",
        summary="Delete a throttling template (refused while an IP address uses it)",
        responses=envelope_responses(None),
    )
    async def delete_template(record_id: str, request: Request) -> JSONResponse:
        rid = parse_record_id(record_id)
        store = store_of(request)

        def work() -> None:
            with store.write() as conn:
                ThrottlingTemplateRepository(conn).delete(rid)

        await run_in_threadpool(work)
        return success({})

    return api
