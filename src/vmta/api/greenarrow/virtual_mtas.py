"""``/ga/api/v3/eng/virtual_mtas``: VirtualMTAs across the three types, who uses one,
and the default VirtualMTA (contract §2.9)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from vmta.api import json_bounds
from vmta.api.dependencies import store_of
from vmta.api.greenarrow import request_schemas
from vmta.api.greenarrow import routing_rule_schemas as schemas
from vmta.api.greenarrow.envelope import read_wrapped, success
from vmta.api.greenarrow.fields import Fields, parse_record_id
from vmta.api.greenarrow.pagination import page_request, paginated
from vmta.api.greenarrow.virtual_mta_resource import name_filter, name_parameter
from vmta.api.openapi import PAGE_PARAMETERS, envelope_responses, ref, request_body, with_query
from vmta.domain.config.virtual_mta import Ref, UsedBy
from vmta.domain.errors import NotFound, ValidationFailed
from vmta.store.virtual_mtas import ListFilter, VirtualMtaRepository

PLURAL = "virtual_mtas"
DEFAULT_KEY = "virtual_mta"


def _summary(vmta: Ref) -> dict[str, Any]:
    """``{type, id, name}``, the form of list items and of the default VirtualMTA."""
    assert vmta.type is not None  # the store returns resolved references
    return {"type": vmta.type.value, "id": vmta.id, "name": vmta.name}


def _default_out(vmta: Ref | None) -> dict[str, Any]:
    return {DEFAULT_KEY: None if vmta is None else _summary(vmta)}


def _used_by_out(user: UsedBy) -> dict[str, Any]:
    return {"type": user.type, "id": user.id, "name": user.name}


def read_default_body(body: bytes) -> Ref | None:
    """The reference of a ``PUT /virtual_mtas/default`` body; None clears the default.

    ``{"virtual_mta": null}`` is the one body whose wrapped value may be null, so it is
    recognised before the common reader (which insists on a hash) sees the body.
    """
    try:
        document = json_bounds.loads(body)
    except (ValueError, UnicodeDecodeError):
        document = None
    if document == {DEFAULT_KEY: None}:
        return None
    inner = read_wrapped(body, DEFAULT_KEY)
    f = Fields()
    found = f.ref({DEFAULT_KEY: inner}, DEFAULT_KEY, "", required=True, nullable=False)
    if not f.ok:
        raise ValidationFailed(f.problems)
    assert found is not None
    return found


def router() -> APIRouter:
    router = APIRouter(tags=[PLURAL])

    @router.get(
        f"/{PLURAL}",
        summary="List VirtualMTAs of every type",
        responses=envelope_responses(PLURAL, list_of=True, item=ref(schemas.VirtualMtaSummary)),
        openapi_extra=with_query({}, *PAGE_PARAMETERS, name_parameter()),
    )
    async def list_virtual_mtas(request: Request) -> JSONResponse:
        filters = ListFilter(name=name_filter(request))
        scope = PLURAL if filters.name is None else f"{PLURAL}|name={filters.name}"
        page = page_request(request.query_params, scope)
        store = store_of(request)

        def work() -> dict[str, Any]:
            with store.read() as conn:
                repo = VirtualMtaRepository(conn)
                return paginated(
                    PLURAL,
                    page,
                    scope,
                    fetch=lambda after, offset, limit: repo.page(
                        None, after_id=after, offset=offset, limit=limit, filters=filters
                    ),
                    count=lambda: repo.count(None, filters),
                    render=_summary,
                    id_of=lambda item: int(item.id),
                )

        return success(await run_in_threadpool(work))

    # Declared before any /{record_id} route, so that "default" is never read as an id.
    @router.get(
        f"/{PLURAL}/default",
        summary="Get the default VirtualMTA",
        responses=envelope_responses(DEFAULT_KEY, schemas.DefaultVirtualMta),
    )
    async def get_default(request: Request) -> JSONResponse:
        store = store_of(request)

        def work() -> dict[str, Any]:
            with store.read() as conn:
                return _default_out(VirtualMtaRepository(conn).default())

        return success(await run_in_threadpool(work))

    @router.put(
        f"/{PLURAL}/default",
        summary="Set or clear the default VirtualMTA",
        openapi_extra=request_body(DEFAULT_KEY, request_schemas.DEFAULT_VIRTUAL_MTA),
        responses=envelope_responses(DEFAULT_KEY, schemas.DefaultVirtualMta),
    )
    async def put_default(request: Request) -> JSONResponse:
        target = read_default_body(await request.body())
        store = store_of(request)

        def work() -> dict[str, Any]:
            with store.write() as conn:
                repo = VirtualMtaRepository(conn)
                repo.set_default(target)
                return _default_out(repo.default())

        return success(await run_in_threadpool(work))

    @router.get(
        f"/{PLURAL}/{{record_id}}/used_by",
        summary="What sends through a VirtualMTA",
        responses=envelope_responses("used_by", list_of=True, item=ref(schemas.UsedBy)),
    )
    async def used_by(record_id: str, request: Request) -> JSONResponse:
        rid = parse_record_id(record_id)
        scope = f"used_by|{rid}"
        page = page_request(request.query_params, scope)
        store = store_of(request)

        def work() -> dict[str, Any]:
            with store.read() as conn:
                repo = VirtualMtaRepository(conn)
                if repo.get(rid) is None:
                    raise NotFound(f"No VirtualMTA with id {rid}.")
                return paginated(
                    "used_by",
                    page,
                    scope,
                    fetch=lambda after, offset, limit: repo.used_by_page(
                        rid, after_id=after, offset=offset, limit=limit
                    ),
                    count=lambda: repo.used_by_count(rid),
                    render=_used_by_out,
                    # The default VirtualMTA setting is always last, so a page never
                    # ends on it when another page follows.
                    id_of=lambda user: int(user.id or 0),
                )

        return success(await run_in_threadpool(work))

    return router
