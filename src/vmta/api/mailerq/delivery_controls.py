"""``/v1/pauses`` and ``/v1/errors`` (MailerQ REST API v1 "Pauses" and "Errors").

A record is identified by its matcher fields (``pool``, ``mta``, ``domain``, ``ip``,
``tag``): POST creates it or updates the one with the same fields; DELETE names those
fields (anything else of the record is ignored, so a client may send back a record as GET
wrote it). ``pool`` with ``mta``, or ``domain`` with ``ip``, is 400. GET lists the records
that are active (an expired one is no longer listed), with only the fields that are set,
plus ``cluster``. ``expire`` is UTC ``YYYY-MM-DD HH:MM:SS``, and must lie in the future.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import Connection

from vmta.api.dependencies import ports_of, store_of
from vmta.api.mailerq import fields as f
from vmta.api.mailerq.body import Fields, combine, read_body
from vmta.api.mailerq.schemas import body_spec, responses
from vmta.domain.config.ip_pool import pool_name_problem
from vmta.domain.errors import NotFound
from vmta.domain.paths.delivery_controls import (
    MATCHER_FIELDS,
    ForcedError,
    Matcher,
    Pause,
    exclusivity_problems,
    format_expire,
    is_active,
    matcher,
    parse_expire,
)
from vmta.store.delivery_controls import ForcedErrorRepository, MatcherRepository, PauseRepository

PAUSES = "/v1/pauses"
ERRORS = "/v1/errors"
ALLOW = "GET, POST, DELETE"
PAUSE_FIELDS = (*MATCHER_FIELDS, "cluster", "expire")
ERROR_FIELDS = (*PAUSE_FIELDS, "code", "extended", "description")
Control = TypeVar("Control", Pause, ForcedError)


def _now(request: Request) -> float:
    return ports_of(request).now()


def _matcher(fields: Fields, problems: list[str]) -> Matcher:
    pool = f.string(fields, "pool", problems, limit=100)
    if pool is not None and pool != "*" and (problem := pool_name_problem("pool", pool)):
        problems.append(problem)
    found = matcher(
        pool=pool,
        mta=f.ip(fields, "mta", problems, wildcard=True),
        domain=f.domain(fields, "domain", problems, wildcard=True),
        ip=f.ip(fields, "ip", problems, wildcard=True),
        tag=f.string(fields, "tag", problems, limit=500),
    )
    problems.extend(exclusivity_problems(found))
    return found


def _expire(fields: Fields, problems: list[str], now: float) -> float | None:
    text = f.string(fields, "expire", problems, limit=40)
    if text is None:
        return None
    expire = parse_expire(text)
    if expire is None:
        problems.append(f"expire must be a UTC time as YYYY-MM-DD HH:MM:SS, not {f.shown(text)}")
    elif expire <= now:
        problems.append(f"expire {text} is not in the future")
        return None
    return expire


def parse_pause(fields: Fields, now: float) -> Pause:
    problems = f.unknown_problems(fields, PAUSE_FIELDS)
    m = _matcher(fields, problems)
    cluster = f.boolean(fields, "cluster", problems)
    expire = _expire(fields, problems, now)
    f.raise_if(problems)
    return Pause(m, cluster=cluster, expire=expire)


def parse_error(fields: Fields, now: float) -> ForcedError:
    problems = f.unknown_problems(fields, ERROR_FIELDS)
    m = _matcher(fields, problems)
    cluster = f.boolean(fields, "cluster", problems)
    expire = _expire(fields, problems, now)
    code = f.integer(fields, "code", problems, 200, 599, required=True)
    extended = f.extended_code(fields, "extended", problems, code)
    description = f.string(fields, "description", problems, limit=1000)
    f.raise_if(problems)
    assert code is not None
    return ForcedError(
        m, code=code, extended=extended, description=description, cluster=cluster, expire=expire
    )


def matcher_of(fields: Fields, known: tuple[str, ...]) -> Matcher:
    """The matcher a DELETE names; the record's other fields are ignored."""
    problems = f.unknown_problems(fields, known)
    m = _matcher(fields, problems)
    f.raise_if(problems)
    return m


def render_pause(pause: Pause) -> dict[str, Any]:
    record: dict[str, Any] = dict(pause.matcher.as_dict())
    record["cluster"] = pause.cluster
    if pause.expire is not None:
        record["expire"] = format_expire(pause.expire)
    return record


def render_error(error: ForcedError) -> dict[str, Any]:
    record: dict[str, Any] = dict(error.matcher.as_dict())
    record["cluster"] = error.cluster
    if error.expire is not None:
        record["expire"] = format_expire(error.expire)
    record["code"] = error.code
    if error.extended is not None:
        record["extended"] = error.extended
    if error.description is not None:
        record["description"] = error.description
    return record


def _described(m: Matcher) -> str:
    named = ", ".join(f"{k}={v}" for k, v in m.as_dict().items())
    return named or "no fields (everything)"


_MATCHER_PROPS: dict[str, Any] = {
    "pool": {"type": "string", "description": "a pool name (not with mta)"},
    "mta": {"type": "string", "description": "a sending IP (not with pool)"},
    "domain": {"type": "string", "description": "a recipient domain (not with ip)"},
    "ip": {"type": "string", "description": "a remote MX address (not with domain)"},
    "tag": {"type": "string"},
    "cluster": {"type": "boolean", "default": False},
    "expire": {"type": "string", "description": "UTC YYYY-MM-DD HH:MM:SS"},
}
_PAUSE = {"type": "object", "properties": _MATCHER_PROPS}
_ERROR = {
    "type": "object",
    "required": ["code"],
    "properties": {
        **_MATCHER_PROPS,
        "code": {"type": "integer", "minimum": 200, "maximum": 599},
        "extended": {"type": "string", "description": "RFC 3463 code, e.g. 5.7.1"},
        "description": {"type": "string"},
    },
}


@dataclass(frozen=True)
class _Resource(Generic[Control]):
    """What the three routes of pauses or of forced errors differ in."""

    path: str
    noun: str  # the handlers' names (FastAPI's operationIds): list_{noun}s, post_{noun}...
    label: str  # one record, in summaries and messages: "forced error"
    label_plural: str
    schema: dict[str, Any]
    fields: tuple[str, ...]  # the fields a record has (what DELETE may send back)
    body_required: bool  # whether POST needs a body (a forced error needs its code)
    repository: Callable[[Connection], MatcherRepository[Control]]
    parse: Callable[[Fields, float], Control]
    render: Callable[[Control], dict[str, Any]]


def _add_routes(api: APIRouter, spec: _Resource[Control]) -> None:
    """GET (the active ones), POST (create or update by matcher) and DELETE (by matcher)."""

    @api.get(
        spec.path,
        name=f"list_{spec.noun}s",
        summary=f"List active {spec.label_plural}",
        responses=responses(spec.label_plural.capitalize(), spec.schema, array=True),
    )
    async def list_records(request: Request) -> JSONResponse:
        store, now = store_of(request), _now(request)

        def work() -> list[dict[str, Any]]:
            with store.read() as conn:
                items = spec.repository(conn).all()
            return [spec.render(c) for c in items if is_active(c.expire, now)]

        return JSONResponse(await run_in_threadpool(work))

    @api.post(
        spec.path,
        name=f"post_{spec.noun}",
        summary=f"Create a {spec.label}, or update the one with the same matcher fields",
        openapi_extra=body_spec(spec.schema, required=spec.body_required),
        responses=responses(f"The stored {spec.label}", spec.schema, codes=(400, 415)),
    )
    async def post_record(request: Request) -> JSONResponse:
        body = read_body(await request.body(), request.headers.get("content-type"))
        control = spec.parse(body, _now(request))
        store = store_of(request)

        def work() -> dict[str, Any]:
            with store.write() as conn:
                return spec.render(spec.repository(conn).put(control))

        return JSONResponse(await run_in_threadpool(work))

    @api.delete(
        spec.path,
        name=f"delete_{spec.noun}",
        summary=f"Remove the {spec.label} with these matcher fields",
        openapi_extra=body_spec(spec.schema, required=False),
        responses=responses(f"The removed {spec.label}", spec.schema, codes=(400, 404, 415)),
    )
    async def delete_record(request: Request) -> JSONResponse:
        body = read_body(await request.body(), request.headers.get("content-type"))
        m = matcher_of(combine(body, f.query_fields(request)), spec.fields)
        store = store_of(request)

        def work() -> dict[str, Any] | None:
            with store.write() as conn:
                removed = spec.repository(conn).remove(m)
                return None if removed is None else spec.render(removed)

        record = await run_in_threadpool(work)
        if record is None:
            raise NotFound(f"No {spec.label} has {_described(m)}.")
        return JSONResponse(record)


_PAUSES: _Resource[Pause] = _Resource(
    path=PAUSES,
    noun="pause",
    label="pause",
    label_plural="pauses",
    schema=_PAUSE,
    fields=PAUSE_FIELDS,
    body_required=False,
    repository=PauseRepository,
    parse=parse_pause,
    render=render_pause,
)
_ERRORS: _Resource[ForcedError] = _Resource(
    path=ERRORS,
    noun="error",
    label="forced error",
    label_plural="forced errors",
    schema=_ERROR,
    fields=ERROR_FIELDS,
    body_required=True,
    repository=ForcedErrorRepository,
    parse=parse_error,
    render=render_error,
)


def router() -> APIRouter:
    api = APIRouter(tags=["pauses and forced errors (MailerQ v1)"])
    _add_routes(api, _PAUSES)
    _add_routes(api, _ERRORS)
    api.routes.append(f.other_methods_route(PAUSES, ALLOW))
    api.routes.append(f.other_methods_route(ERRORS, ALLOW))
    return api
