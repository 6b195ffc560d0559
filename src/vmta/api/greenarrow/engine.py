"""The GreenArrow Engine API v3 family: every resource under ``/ga/api/v3/eng``, and 405
answers that name every method a path supports.

Each method of a path is its own route, so on its own Starlette would answer a method no
route takes with an ``Allow`` header naming only the first route it tried. A 405 must list
every method the resource supports (RFC 7231 §6.5.5), so after the resources one route
per path takes every other method and answers 405 with the whole list. It is declared
last: a request reaches it only when no resource route matched both path and method.
"""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from vmta.api.errors import GREENARROW_PREFIX
from vmta.api.greenarrow import (
    disk_queue_summary,
    dkim_keys,
    incoming_email_domains,
    ip_addresses,
    relay_servers,
    routing_rules,
    throttle_programs,
    throttles,
    throttling_templates,
    virtual_mtas,
)


def router() -> APIRouter:
    resources = [
        relay_servers.router(),
        ip_addresses.router(),
        routing_rules.router(),
        throttling_templates.router(),
        throttle_programs.router(),
        throttles.router(),
        virtual_mtas.router(),
        disk_queue_summary.router(),
        dkim_keys.router(),
        incoming_email_domains.router(),
    ]
    api = APIRouter()
    for resource in resources:
        api.include_router(resource, prefix=GREENARROW_PREFIX)
    for path, methods in methods_by_path(resources).items():
        # An ASGI app as endpoint and no ``methods``: the route matches every method,
        # extension methods included, so none falls through to Starlette's partial list.
        endpoint = MethodNotAllowed(methods)
        api.routes.append(Route(GREENARROW_PREFIX + path, endpoint, include_in_schema=False))
    return api


def methods_by_path(routers: Iterable[APIRouter]) -> dict[str, list[str]]:
    """The methods each path of ``routers`` supports, in the order they were declared."""
    found: dict[str, list[str]] = {}
    for api in routers:
        for route in api.routes:
            if isinstance(route, APIRoute):
                known = found.setdefault(route.path, [])
                known.extend(m for m in sorted(route.methods or ()) if m not in known)
    return found


class MethodNotAllowed:
    """An ASGI endpoint answering 405 with ``Allow`` naming every method of its path."""

    def __init__(self, methods: list[str]) -> None:
        self.allow = ", ".join(methods)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Rendered by the error table (api/errors.py) in the GreenArrow envelope.
        raise HTTPException(405, headers={"Allow": self.allow})
