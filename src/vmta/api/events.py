"""``GET /api/events``: per event destination, the backlog, the age of the oldest event
not yet delivered, and the last error (docs/events.md)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from vmta.api import own_schemas
from vmta.api.dependencies import ports_of, store_of
from vmta.store.event_outbox import DestinationStatus, EventOutbox


def events_report(
    statuses: list[DestinationStatus],
    configured: list[dict[str, Any]],
    recovered_in_flight: int,
    now: float,
) -> dict[str, Any]:
    """Every configured destination, and any other that still has events (one that was
    configured before, whose events wait until it is configured again)."""
    by_name = {s.name: s for s in statuses}
    names = [d["name"] for d in configured]
    names += sorted(n for n in by_name if n not in names and by_name[n].backlog)
    described = {d["name"]: d for d in configured}
    destinations = []
    for name in names:
        status = by_name.get(name)
        config = described.get(name)
        oldest = status.oldest_created_at if status else None
        destinations.append(
            {
                "name": name,
                "type": config["type"] if config else None,
                "target": config["target"] if config else None,
                "configured": config is not None,
                "backlog": status.backlog if status else 0,
                "in_flight": status.in_flight if status else 0,
                "oldest_undelivered_at": oldest,
                "oldest_undelivered_age": None if oldest is None else max(0.0, now - oldest),
                "last_error": status.last_error if status else None,
                "last_error_at": status.last_error_at if status else None,
                "last_success_at": status.last_success_at if status else None,
                "sent_by_this_node": config["sent"] if config else 0,
                # RabbitMQ: this node's connection, up or down since when and why.
                "connection": config.get("connection") if config else None,
            }
        )
    return {"destinations": destinations, "recovered_in_flight": recovered_in_flight}


def router() -> APIRouter:
    api = APIRouter(prefix="/api", tags=["vmta"])

    @api.get(
        "/events",
        summary="Event destinations: backlog, oldest undelivered event, last error",
        responses=own_schemas.ok(own_schemas.EVENTS, "Every event destination"),
    )
    async def events(request: Request) -> dict[str, Any]:
        now = time.time()
        outbox = EventOutbox(store_of(request), owner="api")
        statuses = await run_in_threadpool(outbox.status, now)
        # This node's destinations and the events found in flight from its previous
        # run; nothing when no data plane runs here.
        configured, recovered = ports_of(request).event_destinations()
        return events_report(statuses, configured, recovered, now)

    return api
