"""What route handlers get from the application: one ``AppContext``, made by
``create_app`` and read through ``context_of`` (or its shorthands ``store_of`` and
``ports_of``), never through attributes looked up one by one on ``app.state``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request

from vmta.api.ports import ApiPorts
from vmta.store.store import Store

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from vmta.api.auth import Authenticator
    from vmta.api.console.routes import Console


@dataclass(frozen=True)
class AppContext:
    """The ports the application was given, and what it built from them."""

    ports: ApiPorts
    authenticator: Authenticator
    console: Console
    metrics_registry: CollectorRegistry  # the data plane's, with the store's readings


def attach(app: FastAPI, context: AppContext) -> None:
    app.state.context = context


def app_context(app: FastAPI) -> AppContext:
    context: AppContext = app.state.context  # set by create_app before any request
    return context


def context_of(request: Request) -> AppContext:
    return app_context(request.app)


def ports_of(request: Request) -> ApiPorts:
    return context_of(request).ports


def store_of(request: Request) -> Store:
    return context_of(request).ports.store
