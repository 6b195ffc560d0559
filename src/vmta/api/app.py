"""The HTTP application: both API families and vmta's own endpoints on one listener."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from starlette.routing import Route

import vmta
from vmta.api import errors, openapi, queue
from vmta.api.auth import OPEN_PATHS, Authenticator
from vmta.api.body_limit import BodyLimit
from vmta.api.greenarrow import engine
from vmta.api.greenarrow.engine import MethodNotAllowed, methods_by_path
from vmta.api.json_bounds import MAX_BODY_BYTES
from vmta.api.mailerq import external_mtas
from vmta.domain.errors import TemporaryError
from vmta.store.store import Store


def create_app(store: Store) -> FastAPI:
    app = FastAPI(
        title="vmta",
        version=vmta.__version__,
        description=(
            "Outbound MTA control plane. GreenArrow Engine API v3 compatible endpoints under"
            " /ga/api/v3/eng, MailerQ REST API v1 compatible endpoints under /v1, and vmta's"
            " own under /api. Every endpoint but /api/health needs credentials:"
            " `Authorization: Bearer <secret>` or Basic `<name>:<secret>`."
        ),
    )
    app.state.store = store
    authenticator = Authenticator(store)
    app.state.authenticator = authenticator

    @app.middleware("http")
    async def require_credentials(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if request.url.path not in OPEN_PATHS:
            header = request.headers.get("authorization")
            try:
                principal = await run_in_threadpool(authenticator.check, header)
            except TemporaryError:
                # The credential store cannot be read (the database is down): 503, so
                # that the client retries, rather than a 401 that says its secret is bad.
                return errors.unavailable(request.url.path)
            if principal is None:
                return errors.unauthorized(request.url.path)
            request.state.principal = principal
        return await call_next(request)

    @app.get("/api/health", tags=["vmta"], summary="Liveness check (no credentials needed)")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(engine.router())
    app.include_router(external_mtas.router())
    own = queue.router()
    app.include_router(own)
    # vmta's own paths answer a method they do not support 405 with an Allow header that
    # names every method they do (RFC 9110 §15.5.6), as the GreenArrow paths do.
    allowed = {"/api/health": ["GET"], **methods_by_path([own])}
    for path, methods in allowed.items():
        app.router.routes.append(Route(path, MethodNotAllowed(methods), include_in_schema=False))

    errors.install(app)
    openapi.install(app, OPEN_PATHS)
    # Outermost, so that an oversized body is refused before credentials are even checked.
    app.add_middleware(
        BodyLimit,
        limit=MAX_BODY_BYTES,
        reject=lambda path: errors.too_large(path, MAX_BODY_BYTES),
    )
    return app
