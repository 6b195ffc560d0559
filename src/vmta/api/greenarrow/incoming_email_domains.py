"""``/ga/api/v3/eng/incoming_email_domains``: GreenArrow's Incoming Email Domains, with
their bounce, spam complaint and forwarding mailboxes (contract §2.2, §2.3).

Lists carry ``{id, type, domain}`` rows under ``data.domains`` (GreenArrow's example);
one domain answers ``data.domain``, one mailbox ``data.mailbox``. Bodies are read
whatever their Content-Type says: GreenArrow's Python client sends none.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from vmta.api.dependencies import store_of
from vmta.api.greenarrow import incoming_email_domain_schemas as schemas
from vmta.api.greenarrow.envelope import read_wrapped, success
from vmta.api.greenarrow.fields import Fields, JsonObject, parse_record_id
from vmta.api.greenarrow.pagination import page_request, paginated
from vmta.api.greenarrow.virtual_mta_resource import FILTER_MAX, text_filter
from vmta.api.openapi import (
    PAGE_PARAMETERS,
    envelope_responses,
    query,
    ref,
    request_body,
    with_query,
)
from vmta.domain.config.bounds import has_control_character
from vmta.domain.config.incoming_domain import (
    BOUNCE,
    EMAIL_STATUSES,
    FORWARDING,
    MAX_FORWARD_TO,
    SPAM_COMPLAINT,
    IncomingDomain,
    Mailbox,
    address_problems,
    domain_problems,
    localpart_problems,
)
from vmta.domain.errors import NotFound
from vmta.store.incoming_domains import IncomingDomainRepository

PATH = "/incoming_email_domains"
TYPE = "incoming_email_domain"
MAILBOX_PATHS = {
    BOUNCE: "bounce_mailboxes",
    SPAM_COMPLAINT: "spam_complaint_mailboxes",
    FORWARDING: "forwarding_mailboxes",
}
_MAILBOX_LABELS = {
    BOUNCE: "bounce mailbox",
    SPAM_COMPLAINT: "spam complaint mailbox",
    FORWARDING: "forwarding mailbox",
}


def render_domain(domain: IncomingDomain) -> dict[str, Any]:
    return {
        "id": domain.id,
        "type": TYPE,
        "domain": domain.domain,
        "email_status": domain.email_status,
    }


def render_mailbox(box: Mailbox) -> dict[str, Any]:
    out: dict[str, Any] = {"id": box.id, "localpart": box.localpart}
    if box.kind == FORWARDING:
        out["forward_to"] = list(box.forward_to)
        out["is_wildcard"] = box.is_wildcard
    return out


def _status_rule(value: str) -> list[str]:
    return [] if value in EMAIL_STATUSES else ["must be one of normal, defer, disabled"]


def parse_domain(doc: JsonObject) -> tuple[str, str]:
    fields = Fields()
    fields.known(doc, "domain", ("domain", "email_status"))
    domain = fields.string(doc, "domain", "domain", rules=domain_problems)
    status = fields.string(doc, "email_status", "domain", rules=_status_rule)
    fields.check()
    assert domain is not None and status is not None
    return domain, status


def parse_mailbox(doc: JsonObject, domain_id: int, kind: str) -> Mailbox:
    fields = Fields()
    allowed = ("localpart", "forward_to", "is_wildcard") if kind == FORWARDING else ("localpart",)
    fields.known(doc, "mailbox", allowed)
    localpart = fields.string(doc, "localpart", "mailbox", rules=localpart_problems)
    forward_to: list[str] = []
    wildcard = False
    if kind == FORWARDING:
        targets = doc.get("forward_to")
        if not isinstance(targets, list) or not 1 <= len(targets) <= MAX_FORWARD_TO:
            fields.problem(
                "mailbox.forward_to", f"must be an array of 1 to {MAX_FORWARD_TO} addresses"
            )
        else:
            for i, target in enumerate(targets):
                path = f"mailbox.forward_to[{i}]"
                if not isinstance(target, str) or has_control_character(target):
                    fields.problem(path, "must be an email address such as user@example.com")
                    continue
                for sentence in address_problems(target):
                    fields.problem(path, sentence)
                forward_to.append(target)
        wildcard = fields.boolean(doc, "is_wildcard", "mailbox", default=False)
    fields.check()
    assert localpart is not None
    return Mailbox(
        id=0,
        domain_id=domain_id,
        kind=kind,
        localpart=localpart,
        forward_to=tuple(forward_to),
        is_wildcard=wildcard,
    )


def _strip_read_only(doc: JsonObject) -> JsonObject:
    return {k: v for k, v in doc.items() if k not in ("id", "type")}


def _found(repo: IncomingDomainRepository, rid: int) -> IncomingDomain:
    domain = repo.get(rid)
    if domain is None:
        raise NotFound(f"No incoming email domain with id {rid}.")
    return domain


def router() -> APIRouter:
    api = APIRouter(tags=["incoming_email_domains"])
    domain_param = query(
        "domain", {"type": "string", "maxLength": FILTER_MAX}, "exact domain, ignoring case"
    )
    list_item = {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "type": {"type": "string", "const": TYPE},
            "domain": {"type": "string"},
        },
    }

    @api.get(
        PATH,
        summary="List incoming email domains",
        responses=envelope_responses("domains", list_of=True, item=list_item),
        openapi_extra=with_query({}, *PAGE_PARAMETERS, domain_param),
    )
    async def list_incoming_email_domains(request: Request) -> JSONResponse:
        domain = text_filter(request, "domain")
        scope = "incoming_email_domains" + ("" if domain is None else f"|domain={domain}")
        page = page_request(request.query_params, scope)
        store = store_of(request)

        def work() -> dict[str, Any]:
            with store.read() as conn:
                repo = IncomingDomainRepository(conn)
                return paginated(
                    "domains",
                    page,
                    scope,
                    fetch=lambda after, offset, limit: repo.page(
                        after_id=after, offset=offset, limit=limit, domain=domain
                    ),
                    count=lambda: repo.count(domain),
                    render=lambda d: {"id": d.id, "type": TYPE, "domain": d.domain},
                    id_of=lambda d: int(d.id),
                )

        return success(await run_in_threadpool(work))

    @api.get(
        PATH + "/{record_id}",
        summary="Get one incoming email domain",
        responses=envelope_responses("domain", schema=schemas.IncomingEmailDomain),
    )
    async def get_incoming_email_domain(record_id: str, request: Request) -> JSONResponse:
        rid = parse_record_id(record_id)
        store = store_of(request)

        def work() -> dict[str, Any]:
            with store.read() as conn:
                return {"domain": render_domain(_found(IncomingDomainRepository(conn), rid))}

        return success(await run_in_threadpool(work))

    @api.post(
        PATH,
        summary="Create an incoming email domain",
        openapi_extra=request_body("domain", schemas.IncomingEmailDomainIn),
        responses=envelope_responses("domain", schema=schemas.IncomingEmailDomain),
    )
    async def create_incoming_email_domain(request: Request) -> JSONResponse:
        doc = _strip_read_only(read_wrapped(await request.body(), "domain"))
        store = store_of(request)

        def work() -> dict[str, Any]:
            domain, status = parse_domain(doc)
            with store.write() as conn:
                repo = IncomingDomainRepository(conn)
                new_id = repo.insert(domain, status)
                return {"domain": render_domain(_found(repo, new_id))}

        return success(await run_in_threadpool(work))

    @api.put(
        PATH + "/{record_id}",
        summary="Update an incoming email domain (only the fields given)",
        openapi_extra=request_body("domain", schemas.IncomingEmailDomainUpdate),
        responses=envelope_responses("domain", schema=schemas.IncomingEmailDomain),
    )
    async def update_incoming_email_domain(record_id: str, request: Request) -> JSONResponse:
        rid = parse_record_id(record_id)
        patch = _strip_read_only(read_wrapped(await request.body(), "domain"))
        store = store_of(request)

        def work() -> dict[str, Any]:
            with store.write() as conn:
                repo = IncomingDomainRepository(conn)
                current = _found(repo, rid)
                merged = {"domain": current.domain, "email_status": current.email_status}
                domain, status = parse_domain(merged | patch)
                repo.update(rid, domain, status)
                return {"domain": render_domain(_found(repo, rid))}

        return success(await run_in_threadpool(work))

    @api.delete(
        PATH + "/{record_id}",
        summary="Delete an incoming email domain and its mailboxes",
        responses=envelope_responses(None),
    )
    async def delete_incoming_email_domain(record_id: str, request: Request) -> JSONResponse:
        rid = parse_record_id(record_id)
        store = store_of(request)

        def work() -> None:
            with store.write() as conn:
                IncomingDomainRepository(conn).delete(rid)

        await run_in_threadpool(work)
        return success({})

    for kind in (BOUNCE, SPAM_COMPLAINT, FORWARDING):
        _mailbox_routes(api, kind)
    return api


def _mailbox_routes(api: APIRouter, kind: str) -> None:
    path = f"{PATH}/{{record_id}}/{MAILBOX_PATHS[kind]}"
    label = _MAILBOX_LABELS[kind]
    noun = MAILBOX_PATHS[kind][:-2]  # operationIds: list_bounce_mailboxes, ...
    record_schema = schemas.ForwardingMailbox if kind == FORWARDING else schemas.Mailbox
    input_schema = schemas.ForwardingMailboxIn if kind == FORWARDING else schemas.MailboxIn

    async def list_mailboxes(record_id: str, request: Request) -> JSONResponse:
        rid = parse_record_id(record_id)
        scope = f"{MAILBOX_PATHS[kind]}|{rid}"
        page = page_request(request.query_params, scope)
        store = store_of(request)

        def work() -> dict[str, Any]:
            with store.read() as conn:
                repo = IncomingDomainRepository(conn)
                _found(repo, rid)
                return paginated(
                    "mailboxes",
                    page,
                    scope,
                    fetch=lambda after, offset, limit: repo.mailbox_page(
                        rid, kind, after_id=after, offset=offset, limit=limit
                    ),
                    count=lambda: repo.mailbox_count(rid, kind),
                    render=render_mailbox,
                    id_of=lambda box: int(box.id),
                )

        return success(await run_in_threadpool(work))

    async def get_mailbox(record_id: str, mailbox_id: str, request: Request) -> JSONResponse:
        rid = parse_record_id(record_id)
        mid = parse_record_id(mailbox_id)
        store = store_of(request)

        def work() -> dict[str, Any]:
            with store.read() as conn:
                repo = IncomingDomainRepository(conn)
                _found(repo, rid)
                box = repo.mailbox(rid, kind, mid)
                if box is None:
                    raise NotFound(f"No {label} with id {mid}.")
                return {"mailbox": render_mailbox(box)}

        return success(await run_in_threadpool(work))

    async def create_mailbox(record_id: str, request: Request) -> JSONResponse:
        rid = parse_record_id(record_id)
        doc = read_wrapped(await request.body(), "mailbox")
        doc = {k: v for k, v in doc.items() if k != "id"}
        store = store_of(request)

        def work() -> dict[str, Any]:
            with store.read() as conn:
                _found(IncomingDomainRepository(conn), rid)
            box = parse_mailbox(doc, rid, kind)
            with store.write() as conn:
                repo = IncomingDomainRepository(conn)
                new_id = repo.insert_mailbox(box)
                stored = repo.mailbox(rid, kind, new_id)
                assert stored is not None
                return {"mailbox": render_mailbox(stored)}

        return success(await run_in_threadpool(work))

    async def delete_mailbox(record_id: str, mailbox_id: str, request: Request) -> JSONResponse:
        rid = parse_record_id(record_id)
        mid = parse_record_id(mailbox_id)
        store = store_of(request)

        def work() -> None:
            with store.write() as conn:
                repo = IncomingDomainRepository(conn)
                _found(repo, rid)
                if repo.mailbox(rid, kind, mid) is None:
                    raise NotFound(f"No {label} with id {mid}.")
                repo.delete_mailbox(rid, kind, mid)

        await run_in_threadpool(work)
        return success({})

    api.add_api_route(
        path,
        list_mailboxes,
        methods=["GET"],
        name=f"list_{noun}es",
        summary=f"List the {label}es of an incoming email domain",
        responses=envelope_responses("mailboxes", list_of=True, item=ref(record_schema)),
        openapi_extra=with_query({}, *PAGE_PARAMETERS),
    )
    api.add_api_route(
        path,
        create_mailbox,
        methods=["POST"],
        name=f"create_{noun}",
        summary=f"Create a {label}",
        openapi_extra=request_body("mailbox", input_schema),
        responses=envelope_responses("mailbox", schema=record_schema),
    )
    api.add_api_route(
        path + "/{mailbox_id}",
        get_mailbox,
        methods=["GET"],
        name=f"get_{noun}",
        summary=f"Get one {label}",
        responses=envelope_responses("mailbox", schema=record_schema),
    )
    api.add_api_route(
        path + "/{mailbox_id}",
        delete_mailbox,
        methods=["DELETE"],
        name=f"delete_{noun}",
        summary=f"Delete a {label}",
        responses=envelope_responses(None),
    )
