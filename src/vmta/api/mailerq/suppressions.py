"""``/v1/suppressions`` (MailerQ REST API v1 "Suppressions").

``value`` is the key, ignoring case. ``code`` is accepted as an integer or a numeric
string (MailerQ's table calls it a string, its examples send numbers) and written as an
integer. A suppression fails mail at once, so only permanent codes (500-599) are accepted:
a 4xx code would promise a retry that a suppression never allows.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from vmta.api.dependencies import store_of
from vmta.api.mailerq import fields as f
from vmta.api.mailerq.body import Fields, combine, read_body
from vmta.api.mailerq.schemas import body_spec, responses
from vmta.domain.errors import NotFound
from vmta.domain.paths.suppression import Suppression, SuppressionType
from vmta.store.suppressions import SuppressionRepository

PATH = "/v1/suppressions"
ALLOW = "GET, POST, DELETE"
FIELDS = ("value", "type", "code", "extended", "description")
_ADDRESS = re.compile(r"[^@\s]{1,64}@[^@\s]{1,253}")


def _value(fields: Fields, problems: list[str], kind: SuppressionType | None) -> str | None:
    value = f.string(fields, "value", problems, required=True, limit=320)
    if value is None:
        return None
    value = value.strip()
    if kind is SuppressionType.ADDRESS:
        domain = value.rpartition("@")[2]
        if not _ADDRESS.fullmatch(value) or f.domain({"d": domain}, "d", []) is None:
            problems.append(
                f"value must be an e-mail address for type address, not {f.shown(value)}"
            )
            return None
    elif kind is SuppressionType.DOMAIN and f.domain({"value": value}, "value", problems) is None:
        return None
    return value


def parse(fields: Fields) -> Suppression:
    problems = f.unknown_problems(fields, FIELDS)
    text = f.string(fields, "type", problems, required=True, limit=20)
    kind: SuppressionType | None = None
    if text is not None:
        try:
            kind = SuppressionType(text.lower())
        except ValueError:
            problems.append(f"type must be 'address' or 'domain', not {f.shown(text)}")
    value = _value(fields, problems, kind)
    code = f.integer(fields, "code", problems, 500, 599, required=True)
    extended = f.extended_code(fields, "extended", problems, code)
    description = f.string(fields, "description", problems, limit=1000)
    f.raise_if(problems)
    assert value is not None and kind is not None and code is not None
    return Suppression(value, kind, code, extended, description)


def key_of(fields: Fields) -> str:
    problems = f.unknown_problems(fields, FIELDS)
    value = f.string(fields, "value", problems, required=True, limit=320)
    f.raise_if(problems)
    assert value is not None
    return value.strip()


def render(entry: Suppression) -> dict[str, Any]:
    record: dict[str, Any] = {"type": entry.type.value, "value": entry.value, "code": entry.code}
    if entry.extended is not None:
        record["extended"] = entry.extended
    if entry.description is not None:
        record["description"] = entry.description
    return record


_RECORD = {
    "type": "object",
    "required": ["value", "type", "code"],
    "properties": {
        "value": {"type": "string", "description": "an address or a domain"},
        "type": {"type": "string", "enum": ["address", "domain"]},
        "code": {"type": "integer", "minimum": 500, "maximum": 599},
        "extended": {"type": "string"},
        "description": {"type": "string"},
    },
}


def router() -> APIRouter:
    api = APIRouter(tags=["suppressions (MailerQ v1)"])

    @api.get(PATH, summary="List suppressions", responses=responses("Entries", _RECORD, array=True))
    async def list_suppressions(request: Request) -> JSONResponse:
        store = store_of(request)

        def work() -> list[dict[str, Any]]:
            with store.read() as conn:
                return [render(s) for s in SuppressionRepository(conn).all()]

        return JSONResponse(await run_in_threadpool(work))

    @api.post(
        PATH,
        summary="Suppress an address or a domain (replacing its entry)",
        openapi_extra=body_spec(_RECORD, required=True),
        responses=responses("The stored entry", _RECORD, codes=(400, 415)),
    )
    async def post_suppression(request: Request) -> JSONResponse:
        entry = parse(read_body(await request.body(), request.headers.get("content-type")))
        store = store_of(request)

        def work() -> dict[str, Any]:
            with store.write() as conn:
                return render(SuppressionRepository(conn).put(entry))

        return JSONResponse(await run_in_threadpool(work))

    @api.delete(
        PATH,
        summary="Remove the entry of a value",
        openapi_extra=body_spec(_RECORD, required=False),
        responses=responses("The removed entry", _RECORD, codes=(400, 404, 415)),
    )
    async def delete_suppression(request: Request) -> JSONResponse:
        body = read_body(await request.body(), request.headers.get("content-type"))
        value = key_of(combine(body, f.query_fields(request)))
        store = store_of(request)

        def work() -> dict[str, Any] | None:
            with store.write() as conn:
                removed = SuppressionRepository(conn).remove(value)
                return None if removed is None else render(removed)

        record = await run_in_threadpool(work)
        if record is None:
            raise NotFound(f"No suppression has value {value}.")
        return JSONResponse(record)

    api.routes.append(f.other_methods_route(PATH, ALLOW))
    return api
