"""What each console page shows, read from the same sources as the JSON endpoints: the
queue summary of ``/ga/api/v3/eng/disk_queue_summary``, the throttles of
``/throttles_in_backoff``, the pauses and forced errors of ``/v1/pauses`` and
``/v1/errors``, the event status of ``/api/events``, the spool of ``/api/messages``.
Nothing here reads a secret: relay passwords, private keys and credential secrets are
never selected."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from vmta.api.console.charts import rates_chart
from vmta.api.console.readings_cache import ReadingsCache
from vmta.api.dependencies import context_of, ports_of, store_of
from vmta.api.events import events_report
from vmta.api.greenarrow import disk_queue_summary
from vmta.api.greenarrow.throttles import render
from vmta.api.mailerq.delivery_controls import render_error, render_pause
from vmta.api.queue import QUEUE_ID_MAX
from vmta.domain.paths.delivery_controls import is_active
from vmta.store.delivery_controls import ForcedErrorRepository, PauseRepository
from vmta.store.delivery_rates import OUTCOMES, Rates, recent_rates
from vmta.store.dkim_keys import DkimKeyRepository
from vmta.store.event_outbox import EventOutbox
from vmta.store.message_search import find_messages, pending_events
from vmta.store.queue_summary import GroupBy
from vmta.store.spool_inspection import SpoolInspector


def when(moment: float | None) -> str:
    if moment is None:
        return "—"
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S")


def iso_shown(text: str | None) -> str:
    """An API time (ISO 8601, UTC) as the console shows times: ``YYYY-MM-DD HH:MM:SS``."""
    if not text:
        return "—"
    return text.replace("T", " ").removesuffix("+00:00")


def _cache(request: Request) -> ReadingsCache:
    cache: ReadingsCache = context_of(request).console.readings
    return cache


def now_of(request: Request) -> float:
    return ports_of(request).now()


async def queue(request: Request) -> dict[str, Any]:
    params = request.query_params
    by = GroupBy.MOST_RECENT if params.get("group_by") == GroupBy.MOST_RECENT else GroupBy.INJECTED
    variant = "throttle" if params.get("variant") == "throttle" else "domain"
    store = store_of(request)

    async def read() -> list[dict[str, Any]]:
        return await run_in_threadpool(disk_queue_summary.summary, store, by, variant)

    rows = await _cache(request).get(("queue", by, variant), read)
    totals = {k: sum(r[k] for r in rows) for k in ("messages", "recipients", "bytes")}
    return {"rows": rows, "group_by": by.value, "variant": variant, "totals": totals}


async def throttles(request: Request) -> dict[str, Any]:
    states = ports_of(request).throttle_states
    await states.refresh()
    return {"throttles": [render(s) for s in states.in_backoff(now_of(request))]}


async def controls(request: Request) -> dict[str, Any]:
    store, now = store_of(request), now_of(request)

    def work() -> dict[str, Any]:
        with store.read() as conn:
            pauses = [p for p in PauseRepository(conn).all() if is_active(p.expire, now)]
            errors = [e for e in ForcedErrorRepository(conn).all() if is_active(e.expire, now)]
        return {
            "pauses": [render_pause(p) for p in pauses],
            "errors": [render_error(e) for e in errors],
        }

    return await run_in_threadpool(work)


async def rates(request: Request) -> dict[str, Any]:
    store, now = store_of(request), now_of(request)

    async def read() -> Rates:
        return await run_in_threadpool(recent_rates, store, now)

    found: Rates = await _cache(request).get(("rates",), read)
    table = [
        {"outcome": o, "minute": found.last_minute(o), "hour": found.last_hour(o)} for o in OUTCOMES
    ]
    return {"table": table, "chart": rates_chart(found)}


async def search(request: Request) -> dict[str, Any]:
    query = request.query_params.get("q", "").strip()[:320]
    store = store_of(request)
    if not query:
        return {"q": "", "results": [], "detail": None}

    def work() -> dict[str, Any]:
        results = find_messages(store, query)
        detail = None
        if len(results) == 1 or (results and results[0]["id"] == query[:QUEUE_ID_MAX]):
            view = SpoolInspector(store).message(results[0]["id"])
            if view is not None:
                detail = {"message": view, "events": pending_events(store, view.id)}
        return {"q": query, "results": results, "detail": detail}

    return await run_in_threadpool(work)


async def events(request: Request) -> dict[str, Any]:
    now = time.time()
    statuses = await run_in_threadpool(EventOutbox(store_of(request), owner="console").status, now)
    configured, recovered = ports_of(request).event_destinations()
    return events_report(statuses, configured, recovered, now)


async def dkim(request: Request) -> dict[str, Any]:
    """The DKIM keys and the TXT record each needs (RFC 6376 §3.6.1); the repository's
    list never reads a private key."""
    store = store_of(request)

    def work() -> list[dict[str, Any]]:
        with store.read() as conn:
            rows = DkimKeyRepository(conn).list()
        return [
            {
                "domain": row.domain,
                "selector": row.selector,
                "default": row.default_for_domain,
                "type": row.key_type,
                "bits": row.key_bits,
                "dns_name": row.dns_name,
                "dns_value": f"v=DKIM1; {row.dns_value}",
            }
            for row in rows
        ]

    return {"keys": await run_in_threadpool(work)}


READERS: dict[str, Callable[[Request], Any]] = {
    "queue": queue,
    "throttles": throttles,
    "controls": controls,
    "rates": rates,
    "search": search,
    "events": events,
    "dkim": dkim,
}
