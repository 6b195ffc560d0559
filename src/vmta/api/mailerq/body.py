"""Request bodies of the MailerQ family (contract §3.1): JSON or form-urlencoded, flat.

A body becomes a flat mapping of field name to value: JSON values as decoded (a client may
send a number or a string), form values always strings. Problems with the body as a whole
(a content type we do not read, JSON that does not parse, a field given twice) raise before
any field is looked at, so a handler only ever sees a well-formed mapping.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from vmta.api import json_bounds
from vmta.api.errors import UnsupportedMediaType
from vmta.domain.errors import InvalidRequest

JSON_TYPE = "application/json"
FORM_TYPE = "application/x-www-form-urlencoded"
SUPPORTED = (JSON_TYPE, FORM_TYPE)

Fields = dict[str, Any]


def media_type(content_type: str | None) -> str | None:
    """The media type of a Content-Type header without its parameters, lower case
    (media types are case-insensitive, RFC 7231 §3.1.1.1)."""
    if content_type is None:
        return None
    return content_type.split(";", 1)[0].strip().lower() or None


def read_body(body: bytes, content_type: str | None) -> Fields:
    """The fields of a POST or DELETE body.

    An empty body (or only whitespace) has no fields, whatever it claims to be, so that a
    DELETE may carry its field in the query string alone. A Content-Type other than JSON or
    form-urlencoded is refused (415), and so is a non-empty body without one.
    """
    kind = media_type(content_type)
    if kind is not None and kind not in SUPPORTED:
        raise UnsupportedMediaType(
            f"Content-Type {kind} is not supported; send {JSON_TYPE} or {FORM_TYPE}."
        )
    if not body.strip():
        return {}
    if kind is None:
        raise UnsupportedMediaType(
            f"The request has a body but no Content-Type; send {JSON_TYPE} or {FORM_TYPE}."
        )
    if kind == JSON_TYPE:
        return read_json(body)
    return read_form(body, "request body")


def read_json(body: bytes) -> Fields:
    """A JSON object (RFC 8259); duplicate keys and NaN/Infinity are refused as malformed."""
    try:
        document = json_bounds.loads(
            body, object_pairs_hook=_unique_keys, parse_constant=_no_constant
        )
    except _DuplicateKey as exc:
        raise InvalidRequest(f"{_shown(exc.key)} is given more than once.") from None
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("The request body is not valid JSON.") from None
    if not isinstance(document, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return document


def read_form(data: bytes, where: str) -> Fields:
    """``name=value&...`` as HTML forms send it: ``+`` is a space, ``%XX`` a byte of UTF-8.

    A piece without ``=`` or a name given twice is malformed (the second would otherwise
    silently win). Empty pieces (``a=1&&b=2``, a trailing ``&``) are skipped, as browsers do.
    """
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise InvalidRequest(f"The {where} is not valid UTF-8.") from None
    fields: Fields = {}
    for piece in text.split("&"):
        if not piece:
            continue
        raw_name, sep, raw_value = piece.partition("=")
        try:
            name = unquote_plus(raw_name, errors="strict")
            value = unquote_plus(raw_value, errors="strict")
        except UnicodeDecodeError:
            raise InvalidRequest(f"The {where} holds a %-escape that is not UTF-8.") from None
        if not sep:
            raise InvalidRequest(f"The {where} is malformed: {_shown(name)} has no '=value'.")
        if name in fields:
            raise InvalidRequest(f"{_shown(name)} is given more than once.")
        fields[name] = value
    return fields


def combine(body: Fields, query: Fields) -> Fields:
    """Body and query-string fields of a DELETE together; the same field in both is
    accepted only with the same value, since either could be the one the client meant."""
    fields = dict(body)
    for name, value in query.items():
        if name in fields and fields[name] != value:
            raise InvalidRequest(
                f"{_shown(name)} is given in both the body and the query string, with"
                " different values."
            )
        fields[name] = value
    return fields


def _shown(name: str) -> str:
    return name if len(name) <= 50 else name[:47] + "..."


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(key)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
