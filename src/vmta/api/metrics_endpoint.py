"""``GET /metrics``: Prometheus text exposition format (docs/metrics.md). It needs
credentials like every endpoint but the health check: a scrape configuration sends them
as a bearer token."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from vmta.runtime.metrics import DeliveryMetrics


def router() -> APIRouter:
    api = APIRouter(tags=["vmta"])

    @api.get(
        "/metrics",
        summary="Prometheus metrics (text exposition format)",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
    )
    async def metrics(request: Request) -> Response:
        delivery: DeliveryMetrics = request.app.state.metrics
        # The store collector reads the database: not on the event loop.
        body = await run_in_threadpool(generate_latest, delivery.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return api
