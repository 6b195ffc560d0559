"""Reading the flat fields of a MailerQ request body (JSON or form, ``body.py``) into
Python values, collecting one clause per problem so that the 400 answer names them all in
one sentence (``{"error": "..."}``).

For every field, absent, ``null`` and ``""`` mean "not given" (a form cannot send null,
and HTML forms send empty inputs as ``""``). Unknown field names are refused: a misspelt
``domian`` silently ignored would pause far more than the client meant.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from fastapi import Request
from starlette.exceptions import HTTPException
from starlette.routing import Route

from vmta.api.mailerq.body import Fields, read_form
from vmta.domain.errors import ValidationFailed
from vmta.domain.paths.delivery_controls import ANY, canonical_address

OTHER_METHODS = ["PUT", "PATCH", "HEAD", "OPTIONS", "TRACE"]
_DIGITS = re.compile(r"[0-9]{1,10}")
_DOMAIN = re.compile(
    r"(?=.{1,253}\.?$)([A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)"
    r"(\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?"
)
_EXTENDED = re.compile(r"[245]\.[0-9]{1,3}\.[0-9]{1,3}")


def shown(text: str) -> str:
    return repr(text if len(text) <= 50 else text[:47] + "...")


def kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "a string"


def given(fields: Fields, name: str) -> bool:
    return fields.get(name) not in (None, "")


def sentence(clauses: Iterable[str]) -> str:
    return "; ".join(clauses) + "."


def unknown_problems(fields: Fields, known: Iterable[str]) -> list[str]:
    names = list(known)
    listed = ", ".join(names)
    return [
        f"{name if len(name) <= 50 else name[:47] + '...'} is not a known field"
        f" (known fields: {listed})"
        for name in fields
        if name not in names
    ]


def raise_if(problems: list[str]) -> None:
    if problems:
        raise ValidationFailed(sentence(problems))


def string(
    fields: Fields, name: str, problems: list[str], *, required: bool = False, limit: int = 500
) -> str | None:
    if not given(fields, name):
        if required:
            problems.append(f"{name} is required")
        return None
    value = fields[name]
    if not isinstance(value, str):
        problems.append(f"{name} must be a string, not {kind(value)}")
        return None
    if len(value) > limit:
        problems.append(f"{name} must be at most {limit} characters long")
        return None
    return value


def ip(
    fields: Fields,
    name: str,
    problems: list[str],
    *,
    required: bool = False,
    wildcard: bool = False,
) -> str | None:
    """An IPv4 or IPv6 address in canonical text (``*`` too, when ``wildcard``)."""
    value = string(fields, name, problems, required=required)
    if value is None:
        return None
    if wildcard and value == ANY:
        return value
    canonical = canonical_address(value)
    if canonical is None:
        problems.append(f"{name} must be an IPv4 or IPv6 address, not {shown(value)}")
    return canonical


def domain(fields: Fields, name: str, problems: list[str], *, wildcard: bool = False) -> str | None:
    value = string(fields, name, problems, limit=254)
    if value is None:
        return None
    if wildcard and value == ANY:
        return value
    if not _DOMAIN.fullmatch(value):
        problems.append(f"{name} must be a domain name, not {shown(value)}")
        return None
    return value.lower().rstrip(".")


def boolean(fields: Fields, name: str, problems: list[str], *, default: bool = False) -> bool:
    """A JSON boolean, or as a form sends it: ``true``/``false``, ``1``/``0``, ``yes``/``no``
    (any letter case)."""
    if not given(fields, name):
        return default
    value = fields[name]
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off"):
            return False
    what = shown(value) if isinstance(value, str) else kind(value)
    problems.append(f"{name} must be true or false, not {what}")
    return default


def integer(
    fields: Fields, name: str, problems: list[str], low: int, high: int, *, required: bool
) -> int | None:
    """A JSON integer or a string of digits (MailerQ's own examples send ``"553"``)."""
    if not given(fields, name):
        if required:
            problems.append(f"{name} is required")
        return None
    value = fields[name]
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        number = int(value.strip())
    if number is None or not low <= number <= high:
        what = shown(value) if isinstance(value, str) else kind(value)
        if isinstance(value, int) and not isinstance(value, bool):
            what = str(value)
        problems.append(f"{name} must be an integer from {low} to {high}, not {what}")
        return None
    return number


def extended_code(fields: Fields, name: str, problems: list[str], code: int | None) -> str | None:
    """An enhanced status code (RFC 3463: class.subject.detail) whose class agrees with
    ``code``'s first digit."""
    value = string(fields, name, problems, limit=20)
    if value is None:
        return None
    if not _EXTENDED.fullmatch(value):
        problems.append(f"{name} must be an enhanced status code such as 5.7.1, not {shown(value)}")
        return None
    if code is not None and str(code)[0] in "45" and value[0] != str(code)[0]:
        problems.append(f"{name} {value} does not agree with code {code}")
        return None
    return value


def query_fields(request: Request) -> Fields:
    return read_form(request.scope.get("query_string", b""), "query string")


def other_methods_route(path: str, allow: str) -> Route:
    """The other standard methods: a 405 must list every method the resource supports
    (RFC 7231 §6.5.5), which Starlette alone would not."""

    async def other_method(request: Request) -> None:
        raise HTTPException(405, headers={"Allow": allow})

    supported = {m.strip() for m in allow.split(",")}
    others = [m for m in (*OTHER_METHODS, "GET", "POST", "DELETE") if m not in supported]
    return Route(path, other_method, methods=others, include_in_schema=False)
