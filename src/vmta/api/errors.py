"""The one table that maps errors to what an HTTP client sees, per API family.

GreenArrow paths answer with the v3 envelope (contract §2.1), MailerQ paths with
``{"error": "..."}`` (§3.1), vmta's own paths likewise. Internals never leak: an unexpected
exception is logged here and answered with a generic sentence.
"""

from __future__ import annotations

import logging
from enum import Enum

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from vmta.api.body_limit import too_large_message
from vmta.api.greenarrow.envelope import failure
from vmta.domain.errors import (
    InvalidRequest,
    NotFound,
    TemporaryError,
    Unauthorized,
    ValidationFailed,
)

log = logging.getLogger(__name__)

GREENARROW_PREFIX = "/ga/api/v3/eng"
MAILERQ_PREFIX = "/v1/"
CHALLENGE = 'Basic realm="vmta", charset="UTF-8"'


class Family(Enum):
    GREENARROW = "greenarrow"
    MAILERQ = "mailerq"
    VMTA = "vmta"


def family_of(path: str) -> Family:
    if path == GREENARROW_PREFIX or path.startswith(GREENARROW_PREFIX + "/"):
        return Family.GREENARROW
    if path.startswith(MAILERQ_PREFIX):
        return Family.MAILERQ
    return Family.VMTA


# status, GreenArrow error_code
_TABLE: dict[type[Exception], tuple[int, str]] = {
    InvalidRequest: (400, "invalid_request"),
    ValidationFailed: (400, "validation_failed"),
    Unauthorized: (401, "unauthorized"),
    NotFound: (404, "not_found"),
}


class UnsupportedMediaType(Exception):
    """A request body in a content type the endpoint does not read (MailerQ: 415)."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


def error_response(path: str, status: int, code: str, messages: list[str]) -> JSONResponse:
    if family_of(path) is Family.GREENARROW:
        response = failure(status, code, messages)
    else:
        response = JSONResponse({"error": " ".join(messages)}, status_code=status)
    if status == 401:
        response.headers["WWW-Authenticate"] = CHALLENGE
    return response


# How long a client should wait before trying again after a 503 (RFC 9110 §10.2.3).
RETRY_AFTER_SECONDS = 30
UNAVAILABLE_MESSAGE = (
    "The database cannot serve the request now (it is full or unreachable); try again later."
)


def too_large(path: str, limit: int) -> JSONResponse:
    """413 for a body over ``limit`` bytes, in the family's format."""
    return error_response(path, 413, "invalid_request", [too_large_message(limit)])


def unavailable(path: str) -> JSONResponse:
    """503 for a temporary store failure (a full disk, a lost database connection):
    nothing was changed, and the same request may succeed later."""
    response = error_response(path, 503, "service_unavailable", [UNAVAILABLE_MESSAGE])
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def unauthorized(path: str) -> JSONResponse:
    return error_response(
        path, 401, "unauthorized", ["Missing or invalid credentials (use Bearer or Basic)."]
    )


def install(app: FastAPI) -> None:
    async def domain_error(request: Request, exc: Exception) -> JSONResponse:
        for kind, (status, code) in _TABLE.items():
            if isinstance(exc, kind):
                messages = getattr(exc, "messages", None) or [
                    getattr(exc, "message", None) or str(exc) or code
                ]
                return error_response(request.url.path, status, code, list(messages))
        return await unexpected(request, exc)

    async def unsupported(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, UnsupportedMediaType)
        return error_response(request.url.path, 415, "invalid_request", [exc.message])

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            return error_response(
                request.url.path, 404, "not_found", [f"No resource at {request.url.path}."]
            )
        if exc.status_code == 405:
            response = error_response(
                request.url.path,
                405,
                "invalid_request",
                [f"Method {request.method} is not supported on {request.url.path}."],
            )
            if exc.headers and "Allow" in exc.headers:
                response.headers["Allow"] = exc.headers["Allow"]
            return response
        return error_response(
            request.url.path, exc.status_code, "invalid_request", [str(exc.detail)]
        )

    async def client_gone(request: Request, exc: Exception) -> Response:
        # The client went away, or body_limit answered 413 and said so: nobody is left
        # to read an answer, and it is not a fault of vmta's.
        return Response(status_code=400)

    async def temporary(request: Request, exc: Exception) -> JSONResponse:
        log.warning("temporary failure on %s %s: %s", request.method, request.url.path, exc)
        return unavailable(request.url.path)

    async def request_validation(request: Request, exc: Exception) -> JSONResponse:
        return error_response(request.url.path, 400, "invalid_request", ["Malformed request."])

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(
            request.url.path, 500, "internal_error", ["An internal error occurred."]
        )

    for kind in _TABLE:
        app.add_exception_handler(kind, domain_error)
    app.add_exception_handler(UnsupportedMediaType, unsupported)
    app.add_exception_handler(ClientDisconnect, client_gone)
    app.add_exception_handler(TemporaryError, temporary)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, request_validation)
    app.add_exception_handler(Exception, unexpected)
