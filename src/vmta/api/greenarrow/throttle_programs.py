"""``/ga/api/v3/eng/throttle_programs``: list, get, create, update,
delete and ``used_by``, with the conventions of the other resources (§2.2, §2.3)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from vmta.api.dependencies import store_of
from vmta.api.greenarrow import throttle_program_document as document
from vmta.api.greenarrow import throttle_program_schemas as schemas
from vmta.api.greenarrow.envelope import read_wrapped, success
from vmta.api.greenarrow.fields import merge_patch, parse_record, parse_record_id
from vmta.api.greenarrow.pagination import page_request, paginated
from vmta.api.greenarrow.virtual_mta_resource import name_filter, name_parameter
from vmta.api.openapi import PAGE_PARAMETERS, envelope_responses, ref, request_body, with_query
from vmta.domain.errors import NotFound, PartialRecord
from vmta.domain.throttle_program import ThrottleProgram
from vmta.domain.virtual_mta import Ref, UsedBy
from vmta.store.throttle_programs import (
    USED_BY_CURSOR_MAX,
    ThrottleProgramRepository,
    used_by_cursor,
)

SINGULAR = "throttle_program"
PLURAL = "throttle_programs"
PATH = f"/{PLURAL}"


def _get(repo: ThrottleProgramRepository, program_id: int) -> ThrottleProgram:
    record = repo.get(program_id)
    if record is None:
        raise NotFound(f"No throttle program with id {program_id}.")
    return record


def _list_item(item: Ref) -> dict[str, Any]:
    return {"id": item.id, "name": item.name}


def _user_out(user: UsedBy) -> dict[str, Any]:
    return {"type": user.type, "id": user.id, "name": user.name}


def router() -> APIRouter:
    api = APIRouter(tags=[PLURAL])

    @api.get(
        PATH,
        summary="List throttle programs",
        responses=envelope_responses(PLURAL, list_of=True),
        openapi_extra=with_query({}, *PAGE_PARAMETERS, name_parameter()),
    )
    async def list_programs(request: Request) -> JSONResponse:
        name = name_filter(request)
        scope = PLURAL if name is None else f"{PLURAL}|name={name}"
        page = page_request(request.query_params, scope)
        store = store_of(request)

        def work() -> dict[str, Any]:
            with store.read() as conn:
                repo = ThrottleProgramRepository(conn)
                return paginated(
                    PLURAL,
                    page,
                    scope,
                    fetch=lambda after, offset, limit: repo.page(
                        after_id=after, offset=offset, limit=limit, name=name
                    ),
                    count=lambda: repo.count(name),
                    render=_list_item,
                    id_of=lambda item: int(item.id),
                )

        return success(await run_in_threadpool(work))

    @api.get(
        PATH + "/{record_id}",
        summary="Get one throttle program",
        responses=envelope_responses(SINGULAR, schema=schemas.ThrottleProgram),
    )
    async def get_program(record_id: str, request: Request) -> JSONResponse:
        rid = parse_record_id(record_id)
        store = store_of(request)

        def work() -> dict[str, Any]:
            with store.read() as conn:
                return {SINGULAR: document.render(_get(ThrottleProgramRepository(conn), rid))}

        return success(await run_in_threadpool(work))

    @api.get(
        PATH + "/{record_id}/used_by",
        summary="The throttling templates and IP addresses whose rules name the program",
        responses=envelope_responses("used_by", list_of=True, item=ref(schemas.ProgramUser)),
        openapi_extra=with_query({}, *PAGE_PARAMETERS),
    )
    async def used_by(record_id: str, request: Request) -> JSONResponse:
        rid = parse_record_id(record_id)
        scope = f"{PLURAL}/used_by|{rid}"
        page = page_request(request.query_params, scope, max_after=USED_BY_CURSOR_MAX)
        store = store_of(request)

        def work() -> dict[str, Any]:
            with store.read() as conn:
                repo = ThrottleProgramRepository(conn)
                _get(repo, rid)
                return paginated(
                    "used_by",
                    page,
                    scope,
                    fetch=lambda after, offset, limit: repo.users_page(
                        rid, after=after, offset=offset, limit=limit
                    ),
                    count=lambda: repo.users_count(rid),
                    render=_user_out,
                    id_of=used_by_cursor,
                )

        return success(await run_in_threadpool(work))

    @api.post(
        PATH,
        summary="Create a throttle program",
        openapi_extra=request_body(SINGULAR, schemas.ThrottleProgramIn),
        responses=envelope_responses(SINGULAR, schema=schemas.ThrottleProgram),
    )
    async def create_program(request: Request) -> JSONResponse:
        doc = document.strip_read_only(read_wrapped(await request.body(), SINGULAR))
        store = store_of(request)

        def store_problems(partial: PartialRecord) -> list[str]:
            with store.read() as conn:
                return ThrottleProgramRepository(conn).partial_problems(partial, own_id=None)

        def work() -> dict[str, Any]:
            program = parse_record(document.parse, doc, store_problems=store_problems)
            with store.write() as conn:
                repo = ThrottleProgramRepository(conn)
                new_id = repo.insert(program)
                return {SINGULAR: document.render(_get(repo, new_id))}

        return success(await run_in_threadpool(work))

    @api.put(
        PATH + "/{record_id}",
        summary="Update a throttle program (only the fields given; not a built-in one)",
        openapi_extra=request_body(SINGULAR, schemas.ThrottleProgramIn),
        responses=envelope_responses(SINGULAR, schema=schemas.ThrottleProgram),
    )
    async def update_program(record_id: str, request: Request) -> JSONResponse:
        rid = parse_record_id(record_id)
        patch = document.strip_read_only(read_wrapped(await request.body(), SINGULAR))
        store = store_of(request)

        def work() -> dict[str, Any]:
            with store.write() as conn:
                repo = ThrottleProgramRepository(conn)
                current = document.strip_read_only(document.render(_get(repo, rid)))
                program = parse_record(
                    document.parse,
                    merge_patch(current, patch),
                    store_problems=lambda partial: repo.partial_problems(partial, own_id=rid),
                )
                repo.update(rid, program)
                return {SINGULAR: document.render(_get(repo, rid))}

        return success(await run_in_threadpool(work))

    @api.delete(
        PATH + "/{record_id}",
        summary="Delete a throttle program (refused while a rule names it, or built in)",
        responses=envelope_responses(None),
    )
    async def delete_program(record_id: str, request: Request) -> JSONResponse:
        rid = parse_record_id(record_id)
        store = store_of(request)

        def work() -> None:
            with store.write() as conn:
                ThrottleProgramRepository(conn).delete(rid)

        await run_in_threadpool(work)
        return success({})

    return api
