"""What route handlers get from the application: the store and the credential checker."""

from __future__ import annotations

from fastapi import Request

from vmta.store.store import Store


def store_of(request: Request) -> Store:
    store: Store = request.app.state.store
    return store
