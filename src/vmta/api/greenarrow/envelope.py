"""The GreenArrow response envelope (contract §2.1): every response, success or error, is
``{"success", "data", "error_code", "error_messages"}`` and nothing else."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from vmta.api import json_bounds


def success(data: dict[str, Any]) -> JSONResponse:
    return JSONResponse({"success": True, "data": data, "error_code": None, "error_messages": None})


def failure(status: int, code: str, messages: list[str]) -> JSONResponse:
    return JSONResponse(
        {"success": False, "data": None, "error_code": code, "error_messages": messages},
        status_code=status,
    )


def read_wrapped(body: bytes, key: str) -> dict[str, Any]:
    """The object under ``key`` of a request body ``{"<key>": {...}}``.

    Raises InvalidRequest when the body is not JSON, not an object, or lacks the key.
    """
    from vmta.domain.errors import InvalidRequest

    try:
        document = json_bounds.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("The request body is not valid JSON.") from None
    if not isinstance(document, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    if key not in document:
        raise InvalidRequest(f'The request body must be an object with a "{key}" key.')
    inner = document[key]
    if not isinstance(inner, dict):
        raise InvalidRequest(f'"{key}" must be a JSON object.')
    unknown = sorted(set(document) - {key})
    if unknown:
        raise InvalidRequest(
            f'The request body must hold only the "{key}" key; found also: {", ".join(unknown)}.'
        )
    return inner
