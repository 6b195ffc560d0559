"""``GET /api/reports``: what the bounce and spam complaint mailboxes received and made of
it, newest first; ``?matched=false`` lists the reports that matched no message (kept 30
days, docs/feedback.md)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from vmta.api import own_schemas
from vmta.api.dependencies import store_of
from vmta.api.openapi import query, with_query
from vmta.api.queue import parse_limit
from vmta.domain.config.bounds import MAX_INTEGER
from vmta.domain.errors import InvalidRequest
from vmta.store.inbound_mail import report_page

DEFAULT_LIMIT = 100


def _matched(raw: str | None) -> bool | None:
    if raw is None:
        return None
    if raw not in ("true", "false"):
        raise InvalidRequest("matched must be true or false.")
    return raw == "true"


def _before(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 10 and int(raw) <= MAX_INTEGER):
        raise InvalidRequest(f"before must be an integer from 0 to {MAX_INTEGER}.")
    return int(raw)


def router() -> APIRouter:
    api = APIRouter(tags=["vmta"])

    @api.get(
        "/api/reports",
        summary="Bounces and complaints received, newest first",
        responses=own_schemas.ok(own_schemas.REPORTS, "What came back"),
        openapi_extra=with_query(
            {},
            query("matched", {"type": "string", "enum": ["true", "false"]}, "only these"),
            query("limit", {"type": "integer", "minimum": 1, "maximum": 10_000}, "at most"),
            query("before", {"type": "integer", "minimum": 0}, "ids below this one"),
        ),
    )
    async def list_reports(request: Request) -> dict[str, Any]:
        params = request.query_params
        matched = _matched(params.get("matched"))
        limit = parse_limit(params["limit"]) if "limit" in params else DEFAULT_LIMIT
        before = _before(params.get("before"))
        store = store_of(request)
        reports = await run_in_threadpool(
            report_page, store, matched=matched, after_id=before, limit=limit
        )
        return {"reports": reports}

    return api
