"""One router builder for the GreenArrow resources that are not VirtualMTAs (throttling
templates, throttle programs): each has its own id sequence and name space, and the same
list (paged, ``?name=``), get, create, update and delete as the VirtualMTA resources
(contract §2.2, §2.3). They differ in their document, their repository and the routes
they add of their own (a template's rule rows, a program's ``used_by``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import Connection

from vmta.api.dependencies import store_of
from vmta.api.greenarrow.envelope import read_wrapped, success
from vmta.api.greenarrow.fields import JsonObject, merge_patch, parse_record, parse_record_id
from vmta.api.greenarrow.pagination import page_request, paginated
from vmta.api.greenarrow.row_ids import parsed_with, row_id_problems, without_row_ids
from vmta.api.greenarrow.row_routes import add_row_routes
from vmta.api.greenarrow.virtual_mta_resource import name_filter, name_parameter
from vmta.api.openapi import PAGE_PARAMETERS, envelope_responses, request_body, with_query
from vmta.domain.config.virtual_mta import Ref
from vmta.domain.errors import NotFound, PartialRecord

Record = TypeVar("Record")


class NamedRepository(Protocol[Record]):
    """What the routes need of a store repository (ThrottlingTemplateRepository,
    ThrottleProgramRepository)."""

    def get(self, record_id: int) -> Record | None: ...

    def page(
        self, *, after_id: int | None, offset: int, limit: int, name: str | None = None
    ) -> list[Ref]: ...

    def count(self, name: str | None = None) -> int: ...

    def partial_problems(self, partial: PartialRecord, *, own_id: int | None) -> list[str]: ...

    def insert(self, record: Record) -> int: ...

    def update(self, record_id: int, record: Record) -> None: ...

    def delete(self, record_id: int) -> None: ...


@dataclass(frozen=True)
class NamedResourceSpec(Generic[Record]):
    singular: str  # wrapper key of one record: "throttle_program"
    plural: str  # path and wrapper key of a list: "throttle_programs"
    label: str  # how summaries and messages name one record: "throttle program"
    # The handlers' names, which FastAPI makes the operationIds of: list_{noun}s,
    # get_{noun}, create_{noun}, update_{noun}, delete_{noun}.
    noun: str
    repository: Callable[[Connection], NamedRepository[Record]]
    parse: Callable[[JsonObject], Record]
    render: Callable[[Record], dict[str, Any]]
    strip_read_only: Callable[[JsonObject], JsonObject]  # applied to bodies and to the
    # current record before a PUT merges into it
    update_summary: str  # what PUT does beyond "only the fields given"
    delete_summary: str  # when DELETE is refused
    record_schema: type[BaseModel]  # OpenAPI: the record as GET answers it
    input_schema: type[BaseModel] | dict[str, Any]  # and the body of POST
    update_schema: type[BaseModel] | dict[str, Any]  # and of PUT
    # Arrays whose rows have ids that a PUT keeps (see row_ids); "rules" also gets the
    # routes of one rule row (row_routes), described by ``rule_schema``.
    row_arrays: Sequence[str] = ()
    rule_schema: Any = None


def record_or_not_found(
    spec: NamedResourceSpec[Record], repo: NamedRepository[Record], record_id: int
) -> Record:
    record = repo.get(record_id)
    if record is None:
        raise NotFound(f"No {spec.label} with id {record_id}.")
    return record


def build_named_router(spec: NamedResourceSpec[Record]) -> APIRouter:
    api = APIRouter(tags=[spec.plural])
    path = f"/{spec.plural}"

    def read_current(conn: Any, rid: int) -> JsonObject:
        return spec.render(record_or_not_found(spec, spec.repository(conn), rid))

    def apply_update(conn: Any, rid: int, patch: JsonObject) -> JsonObject:
        """A PUT of ``patch`` (without read-only fields); the record after it."""
        repo = spec.repository(conn)
        current = spec.render(record_or_not_found(spec, repo, rid))
        # Rows given with their ids are updated in place and keep them; rows without one
        # are new (contract §2.3, row_ids).
        id_problems = row_id_problems(patch, current, spec.row_arrays)
        merged = merge_patch(spec.strip_read_only(current), patch)
        record = parsed_with(
            lambda: parse_record(
                spec.parse,
                merged,
                store_problems=lambda partial: repo.partial_problems(partial, own_id=rid),
            ),
            id_problems,
        )
        repo.update(rid, record)
        return spec.render(record_or_not_found(spec, repo, rid))

    @api.get(
        path,
        name=f"list_{spec.noun}s",
        summary=f"List {spec.label}s",
        responses=envelope_responses(spec.plural, list_of=True),
        openapi_extra=with_query({}, *PAGE_PARAMETERS, name_parameter()),
    )
    async def list_records(request: Request) -> JSONResponse:
        name = name_filter(request)
        scope = spec.plural if name is None else f"{spec.plural}|name={name}"
        page = page_request(request.query_params, scope)
        store = store_of(request)

        def work() -> dict[str, Any]:
            with store.read() as conn:
                repo = spec.repository(conn)
                return paginated(
                    spec.plural,
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
        path + "/{record_id}",
        name=f"get_{spec.noun}",
        summary=f"Get one {spec.label}",
        responses=envelope_responses(spec.singular, schema=spec.record_schema),
    )
    async def get_record(record_id: str, request: Request) -> JSONResponse:
        rid = parse_record_id(record_id)
        store = store_of(request)

        def work() -> dict[str, Any]:
            with store.read() as conn:
                return {spec.singular: read_current(conn, rid)}

        return success(await run_in_threadpool(work))

    @api.post(
        path,
        name=f"create_{spec.noun}",
        summary=f"Create a {spec.label}",
        openapi_extra=request_body(spec.singular, spec.input_schema),
        responses=envelope_responses(spec.singular, schema=spec.record_schema),
    )
    async def create_record(request: Request) -> JSONResponse:
        doc = spec.strip_read_only(read_wrapped(await request.body(), spec.singular))
        doc = without_row_ids(doc, spec.row_arrays)
        store = store_of(request)

        def store_problems(partial: PartialRecord) -> list[str]:
            # Only a refused document gets here, so it needs no write transaction.
            with store.read() as conn:
                return spec.repository(conn).partial_problems(partial, own_id=None)

        def work() -> dict[str, Any]:
            record = parse_record(spec.parse, doc, store_problems=store_problems)
            with store.write() as conn:
                repo = spec.repository(conn)
                new_id = repo.insert(record)
                return {spec.singular: spec.render(record_or_not_found(spec, repo, new_id))}

        return success(await run_in_threadpool(work))

    @api.put(
        path + "/{record_id}",
        name=f"update_{spec.noun}",
        summary=spec.update_summary,
        openapi_extra=request_body(spec.singular, spec.update_schema),
        responses=envelope_responses(spec.singular, schema=spec.record_schema),
    )
    async def update_record(record_id: str, request: Request) -> JSONResponse:
        rid = parse_record_id(record_id)
        patch = spec.strip_read_only(read_wrapped(await request.body(), spec.singular))
        store = store_of(request)

        def work() -> dict[str, Any]:
            with store.write() as conn:
                return {spec.singular: apply_update(conn, rid, patch)}

        return success(await run_in_threadpool(work))

    if "rules" in spec.row_arrays:
        add_row_routes(
            api,
            path=path,
            array="rules",
            label=f"a {spec.label}",
            read=read_current,
            apply=apply_update,
            schema=spec.rule_schema,
        )

    @api.delete(
        path + "/{record_id}",
        name=f"delete_{spec.noun}",
        summary=spec.delete_summary,
        responses=envelope_responses(None),
    )
    async def delete_record(record_id: str, request: Request) -> JSONResponse:
        rid = parse_record_id(record_id)
        store = store_of(request)

        def work() -> None:
            with store.write() as conn:
                spec.repository(conn).delete(rid)

        await run_in_threadpool(work)
        return success({})

    return api


def _list_item(ref: Ref) -> dict[str, Any]:
    return {"id": ref.id, "name": ref.name}
