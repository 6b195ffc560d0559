"""vmta's own queue endpoints (contract §4): what is waiting, and what became of a message."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from vmta.api import own_schemas
from vmta.api.dependencies import ports_of, store_of
from vmta.api.openapi import query, with_query
from vmta.domain.attempts.queue_selection import ACTIONS, parse_selection
from vmta.domain.attempts.queue_selection import STATES as SELECTION_STATES
from vmta.domain.errors import InvalidRequest, NotFound
from vmta.store.message_search import MessageSearch, search_messages
from vmta.store.queue_bulk import QueueBulk
from vmta.store.queue_report import deferred_recipients
from vmta.store.spool import SqlSpool

STATES = ("queued", "delivered", "failed")
MAX_LIMIT = 10_000
SEARCH_PARAMETERS = ("state", "limit", "recipient", "sender", "message_id")
MAX_SEARCH_TEXT = 998  # the longest header line (RFC 5322 §2.1.1)
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
        responses=own_schemas.ok(own_schemas.QUEUE, "The queue"),
    )
    async def queue(request: Request) -> dict[str, Any]:
        counts = await run_in_threadpool(_spool(request).inspector.counts)
        deferred = await run_in_threadpool(deferred_recipients, store_of(request))
        return {
            **queue_summary(counts),
            "deferred": deferred,
            "engine": ports_of(request).engine_state(),
        }

    @api.get(
        "/messages",
        summary="Messages in the spool, oldest first; found by recipient, envelope sender"
        " or Message-ID",
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
            query(
                "recipient",
                {"type": "string", "maxLength": MAX_SEARCH_TEXT},
                "only messages to this address (case-insensitive)",
            ),
            query(
                "sender",
                {"type": "string", "maxLength": MAX_SEARCH_TEXT},
                "only messages from this envelope sender (case-insensitive; empty: <>)",
            ),
            query(
                "message_id",
                {"type": "string", "minLength": 1, "maxLength": MAX_SEARCH_TEXT},
                "only messages whose Message-ID field is this (with or without <>), as"
                " send.json answers it",
            ),
        ),
        responses=own_schemas.ok(own_schemas.MESSAGES, "The messages found"),
    )
    async def messages(request: Request) -> dict[str, Any]:
        params = request.query_params
        unknown = sorted(set(params) - set(SEARCH_PARAMETERS))
        if unknown:
            raise InvalidRequest(
                f"unknown parameter {unknown[0]!r}; /api/messages takes"
                f" {', '.join(SEARCH_PARAMETERS)}."
            )
        state = params.get("state")
        if state is not None and state not in STATES:
            raise InvalidRequest(f"state must be one of {', '.join(STATES)}.")
        limit = parse_limit(params.get("limit", "100"))
        texts = {name: params.get(name) for name in ("recipient", "sender", "message_id")}
        for name, text in texts.items():
            if text is not None and (
                len(text) > MAX_SEARCH_TEXT or any(ord(ch) < 32 for ch in text)
            ):
                raise InvalidRequest(
                    f"{name} must be at most {MAX_SEARCH_TEXT} printable characters."
                )
        if texts["message_id"] is not None and not texts["message_id"].strip("<> "):
            raise InvalidRequest("message_id must not be empty.")
        search = MessageSearch(
            state=state,
            recipient=texts["recipient"],
            sender=texts["sender"],
            message_id=texts["message_id"],
        )
        rows = await run_in_threadpool(search_messages, store_of(request), search, limit)
        return {"messages": rows}

    @api.get(
        "/messages/{queue_id}",
        summary="Envelope, recipients and attempts of a message",
        responses=own_schemas.ok(own_schemas.MESSAGE, "The message"),
    )
    async def message(queue_id: str, request: Request) -> dict[str, Any]:
        known_queue_id(queue_id)
        view = await run_in_threadpool(_spool(request).inspector.message, queue_id)
        if view is None:
            raise NotFound(f"No message with queue id {queue_id}.")
        return {"message": vars(view)}

    @api.post(
        "/messages/{queue_id}/retry",
        summary="Make every queued recipient due now",
        responses=own_schemas.ok(own_schemas.RETRIED, "How many recipients are due now"),
    )
    async def retry(queue_id: str, request: Request) -> dict[str, Any]:
        known_queue_id(queue_id)
        spool = _spool(request)
        if await run_in_threadpool(spool.inspector.message, queue_id) is None:
            raise NotFound(f"No message with queue id {queue_id}.")
        count = await run_in_threadpool(spool.housekeeping.retry_now, queue_id, time.time())
        ports_of(request).wake_engine()
        return {"queue_id": queue_id, "recipients_due_now": count}

    @api.delete(
        "/messages/{queue_id}",
        summary="Remove a message from the spool",
        responses=own_schemas.ok(own_schemas.DELETED, "Deleted"),
    )
    async def delete(queue_id: str, request: Request) -> dict[str, Any]:
        known_queue_id(queue_id)
        if not await run_in_threadpool(_spool(request).housekeeping.delete_message, queue_id):
            raise NotFound(f"No message with queue id {queue_id}.")
        return {"queue_id": queue_id, "deleted": True}

    for action in ACTIONS:
        api.add_api_route(
            f"/queue/{action}",
            _bulk_route(action),
            methods=["POST"],
            operation_id=f"queue_{action}",
            summary=BULK_SUMMARIES[action],
            openapi_extra=with_query({}, *SELECTION_PARAMETERS),
            responses=own_schemas.ok(own_schemas.BULK, "How many recipients changed"),
        )
    return api


BULK_SUMMARIES = {
    "retry": "Make the selected queued recipients due now",
    "delete": "Delete the selected recipients (and messages left without any)",
    "hold": "Hold the selected queued recipients: not sent until released",
    "release": "Release the selected held recipients: due now",
}

SELECTION_PARAMETERS = (
    query("virtual_mta", {"type": "string", "minLength": 1}, "VirtualMTA by name"),
    query("domain", {"type": "string", "minLength": 1}, "recipient domain"),
    query("sender", {"type": "string"}, "envelope sender (empty: <>)"),
    query("state", {"type": "string", "enum": list(SELECTION_STATES)}, "recipient state"),
    query(
        "older_than",
        {"type": "integer", "minimum": 0, "maximum": 10 * 365 * 86_400},
        "received more than this many seconds ago",
    ),
)


def _bulk_route(action: str) -> Callable[[Request], Any]:
    async def bulk(request: Request) -> dict[str, Any]:
        raw = {name: request.query_params[name] for name in request.query_params}
        if len(request.query_params.multi_items()) != len(raw):
            raise InvalidRequest("give each parameter once.")
        selection = parse_selection(raw)
        bulk_actions = QueueBulk(store_of(request))
        result = await run_in_threadpool(bulk_actions.apply, action, selection, time.time())
        if action in ("retry", "release") and result.changed:
            ports_of(request).wake_engine()
        return result.as_dict()

    bulk.__name__ = f"queue_{action}"
    return bulk
