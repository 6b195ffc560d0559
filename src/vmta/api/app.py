"""The HTTP application: both API families and vmta's own endpoints on one listener."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi_offline import FastAPIOffline
from starlette.routing import Route

import vmta
from vmta.api import (
    errors,
    events,
    http_submission,
    metrics_endpoint,
    openapi,
    own_schemas,
    queue,
    reports,
)
from vmta.api.auth import (
    INJECTION_PATHS,
    OPEN_PATHS,
    SELF_AUTHENTICATING_PATHS,
    Authenticator,
    forbidden,
    may_use,
)
from vmta.api.body_limit import BodyLimit
from vmta.api.console import routes as console_routes
from vmta.api.dependencies import AppContext, app_context, attach, ports_of
from vmta.api.greenarrow import engine
from vmta.api.greenarrow.engine import MethodNotAllowed, methods_by_path
from vmta.api.json_bounds import MAX_BODY_BYTES
from vmta.api.mailerq import delivery_controls, external_mtas, inject, pools, suppressions
from vmta.api.ports import ApiPorts
from vmta.domain.errors import TemporaryError

DOCS_ASSETS = "/docs-assets"  # Swagger UI's files, served by this listener

# Requests that may change what the engine routes by (message injection aside).
CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def create_app(ports: ApiPorts) -> FastAPI:
    """The application, given what it serves from (``api/ports.py``): the store, the
    clock, the throttle backoff registry, and the data plane of this process if any."""
    app = build_app()
    serve_from(app, ports)
    return app


def serve_from(app: FastAPI, ports: ApiPorts) -> None:
    """Point an application from ``build_app`` at ``ports``; a new call replaces what an
    earlier one set (credentials cache, console sessions, metrics registry included)."""
    authenticator = Authenticator(ports.store)
    attach(
        app,
        AppContext(
            ports=ports,
            authenticator=authenticator,
            console=console_routes.Console(authenticator),
            metrics_registry=metrics_endpoint.metrics_registry(ports.store, ports.metrics),
        ),
    )


def build_app() -> FastAPI:
    """The routes, middleware and OpenAPI document, which depend on nothing the
    application serves from: every request reads that from the context ``serve_from``
    attaches (api/dependencies.py). Building them costs tens of milliseconds of CPU,
    which is why the API tests build one per process and give it each test's store."""
    # FastAPI's /docs and /redoc load their scripts from a CDN, so they stay blank on a
    # host without internet access (common in sending networks); fastapi-offline ships
    # the same Swagger UI files in its package and serves them from here. ReDoc is not
    # offered: its page still asks Google Fonts and its bundle a CDN for a logo, so it
    # cannot be fully offline; /docs shows the same document.
    app = FastAPIOffline(
        static_url=DOCS_ASSETS,
        redoc_url=None,
        title="vmta",
        version=vmta.__version__,
        description=(
            "Outbound MTA control plane. GreenArrow Engine API v3 compatible endpoints under"
            " /ga/api/v3/eng, MailerQ REST API v1 compatible endpoints under /v1, and vmta's"
            " own under /api. Every endpoint but /api/health needs credentials:"
            " `Authorization: Bearer <secret>` or Basic `<name>:<secret>`."
        ),
    )

    @app.middleware("http")
    async def require_credentials(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        path = request.url.path
        # The HTTP Submission API may carry its credentials in the body; it checks them
        # itself, and only for the methods it serves.
        checks_itself = path in SELF_AUTHENTICATING_PATHS and request.method in ("POST", "PUT")
        # The console checks its own session cookie (api/console/routes.py).
        checks_itself = checks_itself or console_routes.is_console_path(path)
        if path not in OPEN_PATHS and not checks_itself:
            header = request.headers.get("authorization")
            authenticator = app_context(request.app).authenticator
            try:
                principal = await run_in_threadpool(authenticator.check, header)
            except TemporaryError:
                # The credential store cannot be read (the database is down): 503, so
                # that the client retries, rather than a 401 that says its secret is bad.
                return errors.unavailable(request.url.path)
            if principal is None:
                return errors.unauthorized(path)
            if not may_use(principal, path):
                return forbidden(path)  # a submit credential (contract §4)
            request.state.principal = principal
        response = await call_next(request)
        if (
            request.method in CHANGING_METHODS
            and path not in INJECTION_PATHS
            and response.status_code < 400
        ):
            # A configuration change applies to the next message this process routes,
            # not up to a second later (delivery/routing/config_view.py): a client that
            # changes a VirtualMTA and then sends through it gets what it set.
            ports_of(request).config_changed()
        return response

    @app.get(
        "/api/health",
        tags=["vmta"],
        summary="Liveness check (no credentials needed)",
        responses=own_schemas.ok(own_schemas.HEALTH, "Alive"),
    )
    async def health(request: Request) -> dict[str, Any]:
        # Alive whatever RabbitMQ does: the links are shown, they never fail the check.
        return {"status": "ok", "dependencies": ports_of(request).dependencies()}

    app.include_router(engine.router())
    app.include_router(external_mtas.router())
    app.include_router(pools.router())
    app.include_router(delivery_controls.router())
    app.include_router(suppressions.router())
    app.include_router(inject.router())
    own = queue.router()
    app.include_router(own)
    app.include_router(events.router())
    app.include_router(metrics_endpoint.router())
    app.include_router(http_submission.router())
    app.include_router(reports.router())  # what came back (docs/feedback.md)
    app.include_router(console_routes.router())
    app.include_router(console_routes.favicon_router())
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
        reject=errors.too_large,
        larger={"/api/v1/send.json": http_submission.MAX_BODY, "/v1/inject": inject.MAX_BODY},
    )
    return app
