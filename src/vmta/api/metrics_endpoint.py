"""``GET /metrics``: Prometheus text exposition format (docs/metrics.md). It needs
credentials like every endpoint but the health check: a scrape configuration sends them
as a bearer token.

The registry holds the data plane's own metrics (``vmta.runtime.metrics``) when one runs
in this process, and always ``StoreCollector``: what the database knows for the whole
cluster, read at each scrape.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from vmta.api.dependencies import context_of
from vmta.api.queue import queue_summary
from vmta.store.event_outbox import EventOutbox
from vmta.store.spool import SqlSpool
from vmta.store.store import Store

STATES = ("ready", "deferred", "waiting", "delivered", "failed")


class StoreCollector(Collector):
    """Recipients by state and event backlog per destination, read at each scrape."""

    def __init__(self, store: Store) -> None:
        self.spool = SqlSpool(store, owner="metrics")
        self.outbox = EventOutbox(store, owner="metrics")

    def describe(self) -> Iterable[Any]:
        return []  # no database read when the collector is registered

    def collect(self) -> Iterable[Any]:
        queue = GaugeMetricFamily(
            "vmta_queue_recipients",
            "Recipients in the spool by state (queued ones as ready, deferred or waiting)",
            labels=["state"],
        )
        summary = queue_summary(self.spool.inspector.counts())
        values = {**summary["queued"], **summary["recipients"]}
        for state in STATES:
            queue.add_metric([state], values.get(state, 0))
        yield queue
        backlog = GaugeMetricFamily(
            "vmta_event_backlog",
            "Events not yet acknowledged by the destination",
            labels=["destination"],
        )
        oldest = GaugeMetricFamily(
            "vmta_event_oldest_age_seconds",
            "Age of the oldest event the destination has not acknowledged",
            labels=["destination"],
        )
        now = time.time()
        for status in self.outbox.status(now):
            backlog.add_metric([status.name], status.backlog)
            age = 0.0 if status.oldest_created_at is None else now - status.oldest_created_at
            oldest.add_metric([status.name], max(0.0, age))
        yield backlog
        yield oldest


def metrics_registry(store: Store, registry: CollectorRegistry | None = None) -> CollectorRegistry:
    """``registry`` (a new one if None) with the store's readings added."""
    registry = registry or CollectorRegistry()
    registry.register(StoreCollector(store))
    return registry


def router() -> APIRouter:
    api = APIRouter(tags=["vmta"])

    @api.get(
        "/metrics",
        summary="Prometheus metrics (text exposition format)",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
    )
    async def metrics(request: Request) -> Response:
        registry = context_of(request).metrics_registry
        # The store collector reads the database: not on the event loop.
        body = await run_in_threadpool(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return api
