"""``/ga/api/v3/eng/throttling_templates`` (contract §2.8).

Templates are not VirtualMTAs (their own id sequence and name space), so they have their
own small router; list, get, create, update and delete behave as for VirtualMTAs
(contract §2.2, §2.3).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from vmta.api.dependencies import store_of
from vmta.api.greenarrow import request_schemas
from vmta.api.greenarrow import throttling_template_document as document
from vmta.api.greenarrow import throttling_template_schemas as schemas
from vmta.api.greenarrow.envelope import read_wrapped, success
from vmta.api.greenarrow.fields import JsonObject, merge_patch, parse_record, parse_record_id
from vmta.api.greenarrow.pagination import page_request, paginated
from vmta.api.greenarrow.request_schemas import for_update
from vmta.api.greenarrow.row_ids import parsed_with, row_id_problems, without_row_ids
from vmta.api.greenarrow.row_routes import add_row_routes
from vmta.api.greenarrow.virtual_mta_resource import name_filter, name_parameter
from vmta.api.openapi import PAGE_PARAMETERS, envelope_responses, request_body, with_query
from vmta.domain.errors import NotFound, PartialRecord
from vmta.domain.virtual_mta import Ref, ThrottlingTemplate
from vmta.store.throttling_templates import ThrottlingTemplateRepository

SINGULAR = "throttling_template"
PLURAL = "throttling_templates"
PATH = f"/{PLURAL}"
ROW_ARRAYS = ("rules",)


def _strip_read_only(doc: JsonObject) -> JsonObject:
    return {k: v for k, v in doc.items() if k != "id"}


def _get(repo: ThrottlingTemplateRepository, template_id: int) -> ThrottlingTemplate:
    record = repo.get(template_id)
    if record is None:
        raise NotFound(f"No throttling template with id {template_id}.")
    return record


def _read(conn: Any, rid: int) -> JsonObject:
    return document.render(_get(ThrottlingTemplateRepository(conn), rid))


def _apply_update(conn: Any, rid: int, patch: JsonObject) -> JsonObject:
    """A PUT of ``patch`` (without read-only fields); the template after it."""
    repo = ThrottlingTemplateRepository(conn)
    current = document.render(_get(repo, rid))
    # Rules given with their ids are updated in place and keep them; rules without one
    # are new (contract §2.3, row_ids).
    id_problems = row_id_problems(patch, current, ROW_ARRAYS)
    merged = merge_patch(_strip_read_only(current), patch)
    template = parsed_with(
        lambda: parse_record(
            document.parse,
            merged,
            store_problems=lambda partial: repo.partial_problems(partial, own_id=rid),
        ),
        id_problems,
    )
    repo.update(rid, template)
    return document.render(_get(repo, rid))


def _list_item(ref: Ref) -> dict[str, Any]:
    return {"id": ref.id, "name": ref.name}


def router() -> APIRouter:
    api = APIRouter(tags=[PLURAL])

    @api.get(
        PATH,
        summary="List throttling templates",
        responses=envelope_responses(PLURAL, list_of=True),
        openapi_extra=with_query({}, *PAGE_PARAMETERS, name_parameter()),
    )
    async def list_templates(request: Request) -> JSONResponse:
        name = name_filter(request)
        scope = PLURAL if name is None else f"{PLURAL}|name={name}"
        page = page_request(request.query_params, scope)
        store = store_of(request)

        def work() -> dict[str, Any]:
            with store.read() as conn:
                repo = ThrottlingTemplateRepository(conn)
                return paginated(
                    PLURAL,
                    page,
                    scope,
                    fetch=lambda after, offset, limit: repo.page(
                        after_id=after, offset=offset, limit=limit, name=name
                    ),
                    count=lambda: repo.count(name),
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
        doc = without_row_ids(doc, ROW_ARRAYS)
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
                return {SINGULAR: _apply_update(conn, rid, patch)}

        return success(await run_in_threadpool(work))

    add_row_routes(
        api,
        path=PATH,
        array="rules",
        label="a throttling template",
        read=_read,
        apply=_apply_update,
        schema=schemas.ThrottleRule,
    )

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
