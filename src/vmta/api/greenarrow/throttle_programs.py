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
from vmta.api.greenarrow.envelope import success
from vmta.api.greenarrow.fields import parse_record_id
from vmta.api.greenarrow.named_resource import (
    NamedResourceSpec,
    build_named_router,
    record_or_not_found,
)
from vmta.api.greenarrow.pagination import page_request, paginated
from vmta.api.openapi import PAGE_PARAMETERS, envelope_responses, ref, with_query
from vmta.domain.config.virtual_mta import UsedBy
from vmta.domain.limits.throttle_program import ThrottleProgram
from vmta.store.throttle_programs import (
    USED_BY_CURSOR_MAX,
    ThrottleProgramRepository,
    used_by_cursor,
)

SINGULAR = "throttle_program"
PLURAL = "throttle_programs"
PATH = f"/{PLURAL}"

SPEC: NamedResourceSpec[ThrottleProgram] = NamedResourceSpec(
    singular=SINGULAR,
    plural=PLURAL,
    label="throttle program",
    noun="program",
    repository=ThrottleProgramRepository,
    parse=document.parse,
    render=document.render,
    strip_read_only=document.strip_read_only,
    update_summary="Update a throttle program (only the fields given; not a built-in one)",
    delete_summary="Delete a throttle program (refused while a rule names it, or built in)",
    record_schema=schemas.ThrottleProgram,
    input_schema=schemas.ThrottleProgramIn,
    update_schema=schemas.ThrottleProgramIn,
)


def _user_out(user: UsedBy) -> dict[str, Any]:
    return {"type": user.type, "id": user.id, "name": user.name}


def router() -> APIRouter:
    api = build_named_router(SPEC)

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
                record_or_not_found(SPEC, repo, rid)
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

    return api
