"""``/v1/externalmtas`` (MailerQ REST API v1, seed 000, contract §3.2).

Field typing follows MailerQ's examples: addresses are strings; ``connect_port`` may be a
JSON number, a numeric JSON string or a form value, and is always written back as a string.
For every field, absent, ``null`` and ``""`` all mean "not given" (a form cannot send
null, and an HTML form sends empty inputs as ``""``).

Unknown field names are refused (400, naming them) rather than ignored as MailerQ may do:
a misspelt ``conect_ip`` silently dropped would leave a proxy unused. DELETE needs only
``public_ip`` and ignores the record's other fields, so a client may send back a record
exactly as GET listed it. POST reads only its body; DELETE reads its body and query string.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from vmta.api.dependencies import store_of
from vmta.api.mailerq import fields as f
from vmta.api.mailerq.body import FORM_TYPE, JSON_TYPE, Fields, combine, read_body
from vmta.api.mailerq.schemas import ERROR_SCHEMA
from vmta.api.schema_patterns import IP, PORT_TEXT
from vmta.domain.config.external_mta import (
    PORT_MAX,
    PORT_MIN,
    ExternalMta,
    ExternalMtaProtocol,
    canonical_ip,
    external_mta,
    ip_problem,
    port_problem,
    protocol_problem,
)
from vmta.domain.errors import NotFound, ValidationFailed
from vmta.store.external_mtas import ExternalMtaRepository

PATH = "/v1/externalmtas"
ALLOW = "GET, POST, DELETE"
FIELDS = ("public_ip", "local_ip", "connect_ip", "connect_port", "protocol")
REQUIRED = frozenset({"public_ip", "local_ip", "connect_port"})
_DIGITS = re.compile(r"[0-9]{1,10}")
_PORT_RULE = f"an integer from {PORT_MIN} to {PORT_MAX}"


# ---- reading a request ---------------------------------------------------------------


def _string(fields: Fields, name: str, problems: list[str]) -> str | None:
    """A string field, or None when it is not given or not a string (a problem noted)."""
    if not f.given(fields, name):
        if name in REQUIRED:
            problems.append(f"{name} is required")
        return None
    value = fields[name]
    if not isinstance(value, str):
        problems.append(f"{name} must be a string, not {f.kind(value)}")
        return None
    return value


def _ip(fields: Fields, name: str, problems: list[str]) -> str | None:
    value = _string(fields, name, problems)
    problem = None if value is None else ip_problem(name, value)
    if problem is not None:
        problems.append(problem)
        return None
    return value


def _port(fields: Fields, problems: list[str]) -> int | None:
    """``connect_port``: a JSON integer or a string of digits (contract §3.2)."""
    name = "connect_port"
    if not f.given(fields, name):
        problems.append(f"{name} is required")
        return None
    value = fields[name]
    port: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        port = value
    elif isinstance(value, str) and _DIGITS.fullmatch(value):
        port = int(value)
    if port is None:
        shown = repr(value[:20]) if isinstance(value, str) else f.kind(value)
        problems.append(f"{name} must be {_PORT_RULE}, not {shown}")
        return None
    problem = port_problem(name, port)
    if problem is not None:
        problems.append(problem)
        return None
    return port


def _protocol(fields: Fields, problems: list[str]) -> str | None:
    value = _string(fields, "protocol", problems)
    problem = None if value is None else protocol_problem("protocol", value)
    if problem is not None:
        problems.append(problem)
        return None
    return value


def parse(fields: Fields) -> ExternalMta:
    """The external MTA a POST describes; ValidationFailed with every problem, in field
    order, in one sentence (the MailerQ error body holds one sentence, contract §3.1)."""
    problems = f.unknown_problems(fields, FIELDS)
    public_ip = _ip(fields, "public_ip", problems)
    local_ip = _ip(fields, "local_ip", problems)
    connect_ip = _ip(fields, "connect_ip", problems)
    connect_port = _port(fields, problems)
    protocol = _protocol(fields, problems)
    if problems or public_ip is None or local_ip is None or connect_port is None:
        raise ValidationFailed(f.sentence(problems))
    return external_mta(
        public_ip=public_ip,
        local_ip=local_ip,
        connect_ip=connect_ip,
        connect_port=connect_port,
        protocol=protocol,
    )


def key_of(fields: Fields) -> str:
    """The canonical ``public_ip`` a DELETE names."""
    problems = f.unknown_problems(fields, FIELDS)
    public_ip = _ip(fields, "public_ip", problems)
    canonical = None if public_ip is None else canonical_ip(public_ip)
    if problems or canonical is None:
        raise ValidationFailed(f.sentence(problems))
    return canonical


# ---- writing a response --------------------------------------------------------------


def render(mta: ExternalMta) -> dict[str, str]:
    """One record as MailerQ writes it: flat, ``connect_port`` a string, ``connect_ip``
    only when set."""
    record = {"public_ip": mta.public_ip, "local_ip": mta.local_ip}
    if mta.connect_ip is not None:
        record["connect_ip"] = mta.connect_ip
    record["connect_port"] = str(mta.connect_port)
    record["protocol"] = mta.protocol.value
    return record


# ---- OpenAPI -------------------------------------------------------------------------

_IP: dict[str, Any] = {**IP, "description": "IPv4 or IPv6 address"}
_NOT_GIVEN = [{"const": ""}, {"type": "null"}]  # absent, null and "" mean the same
_PROTOCOL = {
    "type": "string",
    "enum": [p.value for p in ExternalMtaProtocol],
    "description": "nat: bind local_ip, the network translates it to public_ip;"
    " socks: SOCKS5 tunnel through connect_ip:connect_port; http: HTTP CONNECT tunnel"
    " through connect_ip:connect_port",
}
RECORD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["public_ip", "local_ip", "connect_port", "protocol"],
    "properties": {
        "public_ip": _IP,
        "local_ip": _IP,
        "connect_ip": {**_IP, "description": "present only when set"},
        "connect_port": {"type": "string", "pattern": "^[0-9]+$", "description": "1-65535"},
        "protocol": _PROTOCOL,
    },
    "additionalProperties": False,
}
_PORT_IN = {
    "anyOf": [
        {"type": "integer", "minimum": PORT_MIN, "maximum": PORT_MAX},
        {"type": "string", "pattern": PORT_TEXT},
    ],
    "description": "1-65535, a number or a numeric string",
}
POST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["public_ip", "local_ip", "connect_port"],
    "properties": {
        "public_ip": {**_IP, "description": "the address receivers see; the record's key"},
        "local_ip": {**_IP, "description": "the local address to bind"},
        "connect_ip": {
            "anyOf": [*IP["anyOf"], *_NOT_GIVEN],
            "description": "proxy address; default public_ip",
        },
        "connect_port": _PORT_IN,
        "protocol": {"anyOf": [_PROTOCOL, *_NOT_GIVEN], "default": "nat"},
    },
    "additionalProperties": False,
}
FORM_POST_SCHEMA: dict[str, Any] = {
    **POST_SCHEMA,
    "properties": {
        **POST_SCHEMA["properties"],
        "connect_ip": {"anyOf": [*IP["anyOf"], {"const": ""}]},
        "connect_port": {"type": "string", "pattern": PORT_TEXT},
        "protocol": {"anyOf": [_PROTOCOL, {"const": ""}], "default": "nat"},
    },
}
DELETE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"public_ip": _IP, **{name: {} for name in FIELDS if name != "public_ip"}},
    "additionalProperties": False,
    "description": "public_ip, here or in the query string; the record's other fields are"
    " ignored, so a record may be sent back as GET listed it.",
}


def _body(json_schema: dict[str, Any], form_schema: dict[str, Any], required: bool) -> Any:
    return {
        "requestBody": {
            "required": required,
            "content": {JSON_TYPE: {"schema": json_schema}, FORM_TYPE: {"schema": form_schema}},
        }
    }


def _responses(success: str, schema: dict[str, Any], *codes: int) -> Any:
    reasons = {
        400: "A missing or bad field, or a malformed body",
        401: "Missing or wrong credentials",
        404: "No external MTA has that public_ip",
        415: "A Content-Type other than JSON or form-urlencoded",
    }
    error = {"application/json": {"schema": ERROR_SCHEMA}}
    responses: dict[int | str, dict[str, Any]] = {
        200: {"description": success, "content": {"application/json": {"schema": schema}}}
    }
    for code in (*codes, 401):
        responses[code] = {"description": reasons[code], "content": error}
    return responses


# ---- routes --------------------------------------------------------------------------


def router() -> APIRouter:
    api = APIRouter(tags=["external MTAs (MailerQ v1)"])

    @api.get(
        PATH,
        summary="List external MTAs in creation order",
        responses=_responses("Every external MTA", {"type": "array", "items": RECORD_SCHEMA}),
    )
    async def list_external_mtas(request: Request) -> JSONResponse:
        store = store_of(request)

        def work() -> list[dict[str, str]]:
            with store.read() as conn:
                return [render(mta) for mta in ExternalMtaRepository(conn).all()]

        return JSONResponse(await run_in_threadpool(work))

    @api.post(
        PATH,
        summary="Add an external MTA, or replace the one with the same public_ip",
        description="Replacing keeps the record's place in the list.",
        openapi_extra=_body(POST_SCHEMA, FORM_POST_SCHEMA, required=True),
        responses=_responses("The stored external MTA", RECORD_SCHEMA, 400, 415),
    )
    async def put_external_mta(request: Request) -> JSONResponse:
        fields = read_body(await request.body(), request.headers.get("content-type"))
        mta = parse(fields)
        store = store_of(request)

        def work() -> dict[str, str]:
            with store.write() as conn:
                return render(ExternalMtaRepository(conn).put(mta))

        return JSONResponse(await run_in_threadpool(work))

    @api.delete(
        PATH,
        summary="Remove the external MTA of a public_ip",
        openapi_extra={
            **_body(DELETE_SCHEMA, DELETE_SCHEMA, required=False),
            "parameters": [
                {
                    "name": "public_ip",
                    "in": "query",
                    "required": False,
                    "schema": _IP,
                    "description": "instead of the body's public_ip",
                }
            ],
        },
        responses=_responses("The deleted external MTA", RECORD_SCHEMA, 400, 404, 415),
    )
    async def delete_external_mta(request: Request) -> JSONResponse:
        body = read_body(await request.body(), request.headers.get("content-type"))
        public_ip = key_of(combine(body, f.query_fields(request)))
        store = store_of(request)

        def work() -> dict[str, str] | None:
            with store.write() as conn:
                removed = ExternalMtaRepository(conn).remove(public_ip)
                return None if removed is None else render(removed)

        record = await run_in_threadpool(work)
        if record is None:
            raise NotFound(f"No external MTA has public_ip {public_ip}.")
        return JSONResponse(record)

    api.routes.append(f.other_methods_route(PATH, ALLOW))
    return api
