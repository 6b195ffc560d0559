"""``/ga/api/v3/eng/dkim_keys``: DKIM signing keys (GreenArrow's DKIM Keys page), with
the conventions of the other resources (contract §2.1-§2.3) and two of GreenArrow's own:
unknown top-level keys of a body are ignored (a .NET client sends ``username`` and
``password`` there), and lists never carry private keys.

Generating an RSA key takes from milliseconds to seconds (8192 bits): it runs in a worker
thread, after every field has been checked, never on the event loop.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from vmta.api import json_bounds
from vmta.api.dependencies import store_of
from vmta.api.greenarrow import dkim_key_document as document
from vmta.api.greenarrow import dkim_key_schemas as schemas
from vmta.api.greenarrow.envelope import success
from vmta.api.greenarrow.fields import JsonObject, parse_record_id
from vmta.api.greenarrow.pagination import page_request, paginated
from vmta.api.greenarrow.virtual_mta_resource import FILTER_MAX, text_filter
from vmta.api.openapi import PAGE_PARAMETERS, envelope_responses, query, ref, with_query
from vmta.api.schema_patterns import text
from vmta.domain.config.dkim_key import DkimKey, domain_problems, selector_problems
from vmta.domain.errors import InvalidRequest, NotFound, ValidationFailed
from vmta.store.dkim_keys import DkimKeyRepository

PATH = f"/{document.PLURAL}"


def read_body(body: bytes) -> JsonObject:
    """The ``dkim_key`` object of a body; other top-level keys are ignored."""
    try:
        parsed = json_bounds.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("The request body is not valid JSON.") from None
    if not isinstance(parsed, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    if document.SINGULAR not in parsed:
        raise InvalidRequest(
            f'The request body must be an object with a "{document.SINGULAR}" key.'
        )
    inner = parsed[document.SINGULAR]
    if not isinstance(inner, dict):
        raise InvalidRequest(f'"{document.SINGULAR}" must be a JSON object.')
    return inner


def _one(repo: DkimKeyRepository, key_id: int) -> DkimKey:
    key = repo.get(key_id)
    if key is None:
        raise NotFound(f"No DKIM key with id {key_id}.")
    return key


def router() -> APIRouter:
    api = APIRouter(tags=[document.PLURAL])
    single = envelope_responses(document.SINGULAR, schema=schemas.DkimKey)

    @api.get(
        PATH,
        name="list_dkim_keys",
        summary="List DKIM keys (never their private keys)",
        responses=envelope_responses(document.PLURAL, list_of=True, item=ref(schemas.DkimKeyRow)),
        openapi_extra=with_query(
            {},
            *PAGE_PARAMETERS,
            query("domain", text(max_length=FILTER_MAX), "only this domain's keys (ignoring case)"),
        ),
    )
    async def list_keys(request: Request) -> JSONResponse:
        domain = text_filter(request, "domain")
        scope = document.PLURAL if domain is None else f"{document.PLURAL}|domain={domain.lower()}"
        page = page_request(request.query_params, scope)
        store = store_of(request)

        def work() -> dict[str, Any]:
            with store.read() as conn:
                repo = DkimKeyRepository(conn)
                return paginated(
                    document.PLURAL,
                    page,
                    scope,
                    fetch=lambda after, offset, limit: repo.page(
                        after_id=after, offset=offset, limit=limit, domain=domain
                    ),
                    count=lambda: repo.count(domain),
                    render=document.render_row,
                    id_of=lambda row: int(row.id),
                )

        return success(await run_in_threadpool(work))

    @api.get(
        PATH + "/{record_id}", name="get_dkim_key", summary="Get one DKIM key", responses=single
    )
    async def get_key(record_id: str, request: Request) -> JSONResponse:
        rid = parse_record_id(record_id)
        store = store_of(request)

        def work() -> dict[str, Any]:
            with store.read() as conn:
                return {document.SINGULAR: document.render(_one(DkimKeyRepository(conn), rid))}

        return success(await run_in_threadpool(work))

    @api.post(
        PATH,
        name="create_dkim_key",
        summary="Create a DKIM key: generate one (key.bits, or key.type ed25519) or import"
        " one (key.private)",
        openapi_extra=schemas.request_body(create=True),
        responses=single,
    )
    async def create_key(request: Request) -> JSONResponse:
        doc = document.strip_read_only(read_body(await request.body()))
        store = store_of(request)

        def work() -> dict[str, Any]:
            try:
                plan = document.parse_create(doc)
            except ValidationFailed as refused:
                with store.read() as conn:
                    more = _selector_taken(DkimKeyRepository(conn), doc, own_id=None)
                raise ValidationFailed([*refused.messages, *more]) from None
            with store.read() as conn:
                taken = DkimKeyRepository(conn).selector_problems(
                    plan.domain, plan.selector, own_id=None
                )
            if taken:
                raise ValidationFailed(taken)
            key = plan.realize()  # generated only once the request is known to be good
            with store.write() as conn:
                repo = DkimKeyRepository(conn)
                new_id = repo.create(key)
                return {document.SINGULAR: document.render(_one(repo, new_id))}

        return success(await run_in_threadpool(work))

    @api.put(
        PATH + "/{record_id}",
        name="update_dkim_key",
        summary="Update a DKIM key: domain, selector, default_for_domain, key.private"
        " (only the fields given; key.bits cannot change)",
        openapi_extra=schemas.request_body(create=False),
        responses=single,
    )
    async def update_key(record_id: str, request: Request) -> JSONResponse:
        rid = parse_record_id(record_id)
        doc = document.strip_read_only(read_body(await request.body()))
        store = store_of(request)

        def work() -> dict[str, Any]:
            with store.write() as conn:
                repo = DkimKeyRepository(conn)
                current = _one(repo, rid)
                try:
                    key = document.parse_update(current, doc)
                except ValidationFailed as refused:
                    more = _selector_taken(repo, {**document.render(current), **doc}, own_id=rid)
                    raise ValidationFailed([*refused.messages, *more]) from None
                repo.update(rid, key)
                return {document.SINGULAR: document.render(_one(repo, rid))}

        return success(await run_in_threadpool(work))

    @api.delete(
        PATH + "/{record_id}",
        name="delete_dkim_key",
        summary="Delete a DKIM key (mail is no longer signed with it)",
        responses=envelope_responses(None),
    )
    async def delete_key(record_id: str, request: Request) -> JSONResponse:
        rid = parse_record_id(record_id)
        store = store_of(request)

        def work() -> None:
            with store.write() as conn:
                DkimKeyRepository(conn).delete(rid)

        await run_in_threadpool(work)
        return success({})

    return api


def _selector_taken(repo: DkimKeyRepository, doc: JsonObject, *, own_id: int | None) -> list[str]:
    """With field problems, whether the (well-formed) domain and selector are taken: every
    problem of a request at once (contract §2.1)."""
    domain, selector = doc.get("domain"), doc.get("selector")
    if not isinstance(domain, str) or not isinstance(selector, str):
        return []
    if domain_problems(domain) or selector_problems(selector):
        return []
    return repo.selector_problems(domain, selector, own_id=own_id)
