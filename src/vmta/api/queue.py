"""vmta's own queue endpoints (contract §4): what is waiting, and what became of a message."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from vmta.api.dependencies import store_of
from vmta.api.openapi import query, with_query
from vmta.domain.errors import InvalidRequest, NotFound
from vmta.store.queue_report import deferred_recipients
from vmta.store.spool import SqlSpool

STATES = ("queued", "delivered", "failed")
MAX_LIMIT = 10_000
QUEUE_ID_MAX = 32  # the width of the spool's message id column


def known_queue_id(queue_id: str) -> str:
    """``queue_id`` when it could name a message; a text no queue id can be (not ASCII
    letters and digits, too long, NUL inside) names nothing: 404 without a query."""
    if not (0 < len(queue_id) <= QUEUE_ID_MAX and queue_id.isascii() and queue_id.isalnum()):
        raise NotFound(f"No message with queue id {queue_id[:QUEUE_ID_MAX]!r}.")
    return queue_id


def parse_limit(raw: str) -> int:
    """``?limit=``: ASCII digits only (``str.isdigit`` also takes superscripts such as "²")."""
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 5 and 1 <= int(raw) <= MAX_LIMIT):
        raise InvalidRequest(f"limit must be an integer from 1 to {MAX_LIMIT}.")
    return int(raw)


def _spool(request: Request) -> SqlSpool:
    return SqlSpool(store_of(request), owner="api")


def _engine_state(request: Request) -> dict[str, Any]:
    provider: Callable[[], dict[str, Any]] | None = getattr(request.app.state, "engine_state", None)
    return provider() if provider is not None else {"running": False}


def queue_summary(counts: list[dict[str, Any]]) -> dict[str, Any]:
    """Recipient counts by state, and by VirtualMTA within each state. Queued recipients
    are split into ``waiting`` (no route yet), ``deferred`` (tried, will retry) and
    ``ready`` (not tried yet)."""
    by_state = {state: 0 for state in STATES}
    queued = {"ready": 0, "deferred": 0, "waiting": 0}
    by_vmta: dict[str, dict[str, int]] = {}
    for row in counts:
        n = int(row["n"])
        by_state[row["state"]] = by_state.get(row["state"], 0) + n
        if row["state"] == "queued":
            kind = "waiting" if row["waiting"] else ("deferred" if row["tried"] else "ready")
            queued[kind] += n
        name = row["virtual_mta"] or "(default)"
        entry = by_vmta.setdefault(name, {state: 0 for state in STATES})
        entry[row["state"]] = entry.get(row["state"], 0) + n
    return {
        "recipients": by_state,
        "queued": queued,
        "by_virtual_mta": [{"virtual_mta": k, **v} for k, v in sorted(by_vmta.items())],
    }


def router() -> APIRouter:
    api = APIRouter(prefix="/api", tags=["vmta"])

    @api.get(
        "/queue",
        summary="Recipient counts by state and VirtualMTA, the latest deferred recipients"
        " with their attempts, and the engine's state (its paths in use)",
    )
    async def queue(request: Request) -> dict[str, Any]:
        counts = await run_in_threadpool(_spool(request).counts)
        deferred = await run_in_threadpool(deferred_recipients, store_of(request))
        return {**queue_summary(counts), "deferred": deferred, "engine": _engine_state(request)}

    @api.get(
        "/messages",
        summary="Messages in the spool, oldest first",
        openapi_extra=with_query(
            {},
            query(
                "state",
                {"type": "string", "enum": list(STATES)},
                "only messages with a recipient in this state",
            ),
            query(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
                "at most this many messages (default 100)",
            ),
        ),
    )
    async def messages(request: Request) -> dict[str, Any]:
        state = request.query_params.get("state")
        if state is not None and state not in STATES:
            raise InvalidRequest(f"state must be one of {', '.join(STATES)}.")
        limit = parse_limit(request.query_params.get("limit", "100"))
        rows = await run_in_threadpool(_spool(request).list_messages, state, limit)
        return {"messages": rows}

    @api.get("/messages/{queue_id}", summary="Envelope, recipients and attempts of a message")
    async def message(queue_id: str, request: Request) -> dict[str, Any]:
        known_queue_id(queue_id)
        view = await run_in_threadpool(_spool(request).message, queue_id)
        if view is None:
            raise NotFound(f"No message with queue id {queue_id}.")
        return {"message": vars(view)}

    @api.post("/messages/{queue_id}/retry", summary="Make every queued recipient due now")
    async def retry(queue_id: str, request: Request) -> dict[str, Any]:
        known_queue_id(queue_id)
        spool = _spool(request)
        if await run_in_threadpool(spool.message, queue_id) is None:
            raise NotFound(f"No message with queue id {queue_id}.")
        count = await run_in_threadpool(spool.retry_now, queue_id, time.time())
        wake: Callable[[], None] | None = getattr(request.app.state, "wake_engine", None)
        if wake is not None:
            wake()
        return {"queue_id": queue_id, "recipients_due_now": count}

    @api.delete("/messages/{queue_id}", summary="Remove a message from the spool")
    async def delete(queue_id: str, request: Request) -> dict[str, Any]:
        known_queue_id(queue_id)
        if not await run_in_threadpool(_spool(request).delete_message, queue_id):
            raise NotFound(f"No message with queue id {queue_id}.")
        return {"queue_id": queue_id, "deleted": True}

    return api
