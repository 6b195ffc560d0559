"""One router builder for the three VirtualMTA resources (relay servers, IP addresses,
routing rules): they share list, get, create, update and delete semantics (contract §2.2-2.4)
and differ only in their document and their list filters."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from vmta.api.dependencies import store_of
from vmta.api.greenarrow.envelope import read_wrapped, success
from vmta.api.greenarrow.fields import JsonObject, merge_patch, parse_record, parse_record_id
from vmta.api.greenarrow.pagination import page_request, paginated
from vmta.api.greenarrow.request_schemas import for_update
from vmta.api.greenarrow.row_ids import parsed_with, row_id_problems, without_row_ids
from vmta.api.greenarrow.row_routes import add_row_routes
from vmta.api.openapi import PAGE_PARAMETERS, envelope_responses, query, request_body, with_query
from vmta.api.schema_patterns import text
from vmta.domain.config.bounds import has_control_character
from vmta.domain.config.virtual_mta import Ref, VirtualMta, VirtualMtaType
from vmta.domain.errors import InvalidRequest, NotFound, PartialRecord
from vmta.store.virtual_mtas import ListFilter, VirtualMtaRepository


@dataclass(frozen=True)
class ResourceSpec:
    kind: VirtualMtaType
    singular: str  # wrapper key of one record: "relay_server"
    plural: str  # path and wrapper key of a list: "relay_servers"
    label: str  # how summaries and messages name one record: "IP address"
    label_plural: str  # and several: "IP addresses"
    article: str  # the indefinite article before ``label``: "an" IP address
    parse: Callable[[JsonObject], VirtualMta]
    render: Callable[[Any], dict[str, Any]]
    atomic: Sequence[str]  # keys replaced whole on PUT (references)
    strip_read_only: Callable[[JsonObject], JsonObject]  # applied to request bodies
    # Exact-match list filters: every list takes ``name`` (ignoring case); IP addresses
    # also take ``ip`` and ``hostname``.
    filters: Sequence[str] = ("name",)
    record_schema: Any = None  # pydantic models for the OpenAPI document
    input_schema: dict[str, Any] | None = None  # request_schemas: the POST body
    # What to drop from the current record before a PUT merges into it; defaults to
    # strip_read_only. Differs when ids inside arrays must be ignored in a request but
    # kept while the array itself is left alone (routing rule domain overrides).
    strip_current: Callable[[JsonObject], JsonObject] | None = None
    # Arrays whose rows have ids that a PUT keeps (see row_ids): "domain_overrides".
    row_arrays: Sequence[str] = ()
    rule_schema: Any = None  # OpenAPI model of one throttling rule (IP addresses)


# Longest value a list filter can match: names and hostnames are at most 200 characters.
FILTER_MAX = 200

__all__ = ["FILTER_MAX", "name_filter", "name_parameter", "parse_record_id", "text_filter"]


_FILTERS = {
    "name": "exact name, ignoring case",
    "ip": "exact IPv4 address",
    "hostname": "exact hostname, ignoring case",
}


def _filter_parameters(allowed: Sequence[str]) -> list[dict[str, Any]]:
    schema = text(max_length=FILTER_MAX)
    return [query(key, schema, _FILTERS[key]) for key in allowed]


def _list_filter(request: Request, allowed: Sequence[str]) -> ListFilter:
    values = {key: request.query_params.get(key) for key in allowed}
    problems = [
        f"{key} must be at most {FILTER_MAX} characters without control characters."
        for key, value in values.items()
        if value is not None and (len(value) > FILTER_MAX or has_control_character(value))
    ]
    if problems:
        raise InvalidRequest(problems)
    return ListFilter(**values)


def text_filter(request: Request, key: str) -> str | None:
    """``?KEY=`` of a list (``domain`` of DKIM keys and incoming email domains), checked
    like the filters above."""
    value = request.query_params.get(key)
    if value is not None and (len(value) > FILTER_MAX or has_control_character(value)):
        raise InvalidRequest(
            f"{key} must be at most {FILTER_MAX} characters without control characters."
        )
    return value


def name_filter(request: Request) -> str | None:
    """``?name=`` of a list (every GreenArrow list has it), checked like the others."""
    return _list_filter(request, ("name",)).name


def name_parameter() -> dict[str, Any]:
    """The OpenAPI declaration of ``?name=``."""
    return _filter_parameters(("name",))[0]


def build_router(spec: ResourceSpec) -> APIRouter:
    router = APIRouter(tags=[spec.plural])
    path = f"/{spec.plural}"
    one = f"{spec.article} {spec.label}"

    def _get(repo: VirtualMtaRepository, record_id: int) -> VirtualMta:
        record = repo.get(record_id, spec.kind)
        if record is None:
            raise NotFound(f"No {spec.label} with id {record_id}.")
        return record

    def read_current(conn: Any, rid: int) -> JsonObject:
        return spec.render(_get(VirtualMtaRepository(conn), rid))

    def apply_update(conn: Any, rid: int, patch: JsonObject) -> JsonObject:
        """A PUT of ``patch`` (already stripped of read-only fields); the record after."""
        repo = VirtualMtaRepository(conn)
        current = spec.render(_get(repo, rid))
        id_problems = row_id_problems(patch, current, spec.row_arrays)
        strip_current = spec.strip_current or spec.strip_read_only
        merged = merge_patch(strip_current(current), patch, spec.atomic)
        parsed = parsed_with(
            lambda: parse_record(
                spec.parse,
                merged,
                store_problems=lambda partial: repo.partial_problems(partial, own_id=rid),
            ),
            id_problems,
        )
        repo.update(rid, repo.prepare(parsed, own_id=rid))
        return spec.render(_get(repo, rid))

    @router.get(
        path,
        summary=f"List {spec.label_plural}",
        responses=envelope_responses(spec.plural, list_of=True),
        openapi_extra=with_query({}, *PAGE_PARAMETERS, *_filter_parameters(spec.filters)),
    )
    async def list_records(request: Request) -> JSONResponse:
        filters = _list_filter(request, spec.filters)
        scope = f"{spec.plural}|" + "|".join(
            f"{k}={v}" for k, v in sorted(vars(filters).items()) if v is not None
        )
        page = page_request(request.query_params, scope)
        store = store_of(request)

        def work() -> dict[str, Any]:
            with store.read() as conn:
                repo = VirtualMtaRepository(conn)
                return paginated(
                    spec.plural,
                    page,
                    scope,
                    fetch=lambda after, offset, limit: repo.page(
                        spec.kind, after_id=after, offset=offset, limit=limit, filters=filters
                    ),
                    count=lambda: repo.count(spec.kind, filters),
                    render=_list_item,
                    id_of=lambda ref: int(ref.id),
                )

        return success(await run_in_threadpool(work))

    @router.get(
        path + "/{record_id}",
        summary=f"Get one {spec.label}",
        responses=envelope_responses(spec.singular, schema=spec.record_schema),
    )
    async def get_record(record_id: str, request: Request) -> JSONResponse:
        rid = parse_record_id(record_id)
        store = store_of(request)

        def work() -> dict[str, Any]:
            with store.read() as conn:
                return {spec.singular: spec.render(_get(VirtualMtaRepository(conn), rid))}

        return success(await run_in_threadpool(work))

    @router.post(
        path,
        summary=f"Create {one}",
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
                return VirtualMtaRepository(conn).partial_problems(partial, own_id=None)

        def work() -> dict[str, Any]:
            record = parse_record(spec.parse, doc, store_problems=store_problems)
            with store.write() as conn:
                repo = VirtualMtaRepository(conn)
                new_id = repo.insert(repo.prepare(record, own_id=None))
                return {spec.singular: spec.render(_get(repo, new_id))}

        return success(await run_in_threadpool(work))

    @router.put(
        path + "/{record_id}",
        summary=f"Update {one} (only the fields given)",
        openapi_extra=request_body(
            spec.singular, None if spec.input_schema is None else for_update(spec.input_schema)
        ),
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
            router,
            path=path,
            array="rules",
            label=f"{spec.article} {spec.label}",
            read=read_current,
            apply=apply_update,
            schema=spec.rule_schema,
        )

    @router.delete(
        path + "/{record_id}",
        summary=f"Delete {one} (refused while it is used)",
        responses=envelope_responses(None),
    )
    async def delete_record(record_id: str, request: Request) -> JSONResponse:
        rid = parse_record_id(record_id)
        store = store_of(request)

        def work() -> None:
            with store.write() as conn:
                VirtualMtaRepository(conn).delete(rid, spec.kind)

        await run_in_threadpool(work)
        return success({})

    return router


def _list_item(ref: Ref) -> dict[str, Any]:
    return {"id": ref.id, "name": ref.name}
