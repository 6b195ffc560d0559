"""OpenAPI pieces shared by the MailerQ endpoints: bodies in JSON or form encoding, and the
responses each operation really gives."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vmta.api.mailerq.body import FORM_TYPE, JSON_TYPE

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string", "description": "one sentence"}},
}
_REASONS = {
    400: "A missing or bad field, or a malformed body",
    401: "Missing or wrong credentials",
    403: "The credential may not use this endpoint",
    404: "No such record",
    415: "A Content-Type other than the endpoint reads",
}


def _form(schema: dict[str, Any]) -> dict[str, Any]:
    """The same fields as form values: every value a string."""
    properties = {name: {"type": "string"} for name in schema.get("properties", {})}
    return {**schema, "properties": properties}


def body_spec(schema: dict[str, Any], *, required: bool, form: bool = True) -> dict[str, Any]:
    content: dict[str, Any] = {JSON_TYPE: {"schema": schema}}
    if form:
        content[FORM_TYPE] = {"schema": _form(schema)}
    return {"requestBody": {"required": required, "content": content}}


def responses(
    success: str, schema: dict[str, Any], *, array: bool = False, codes: Sequence[int] = ()
) -> dict[int | str, dict[str, Any]]:
    shape = {"type": "array", "items": schema} if array else schema
    error = {"application/json": {"schema": ERROR_SCHEMA}}
    answered: dict[int | str, dict[str, Any]] = {
        200: {"description": success, "content": {"application/json": {"schema": shape}}}
    }
    for code in (*codes, 401):
        answered[code] = {"description": _REASONS[code], "content": error}
    return answered
