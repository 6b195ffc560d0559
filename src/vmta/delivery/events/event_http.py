"""HTTP POST event destination, as GreenArrow's Event Notification System posts events.

- JSON (the default): ``Content-Type: application/json``, a JSON array of up to
  ``batch_size`` events per request, an array even for one event, as GreenArrow's
  consumers bind it.
- Form (``json_form=False``, GreenArrow's ``use_json_for_http_post`` off): one event per
  request, ``application/x-www-form-urlencoded``, the same fields; a nested value is its
  JSON text, null is empty.

An event type may have its own URL (``type_urls``); a request never mixes events bound
for different URLs, and the events still leave in order. Any 2xx status acknowledges
every event of the request; anything else (a redirect included) or no answer leaves them
queued.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

import httpx

from vmta.delivery.events.event_sender import EventDeliveryFailed
from vmta.domain.reports.delivery_event import EVENT_TYPES, greenarrow_event
from vmta.store.event_outbox import PendingEvent


def display_url(url: str) -> str:
    """The URL for logs and GET /api/events: without user information or query (either
    may carry a secret)."""
    parsed = httpx.URL(url)
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.host}{port}{parsed.path}"


def form_value(value: Any) -> str:
    """One field in the form-encoded body: text as it is, null as empty, anything else
    (numbers, booleans, nested values) as its JSON text."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def form_body(event: Mapping[str, Any]) -> bytes:
    return urlencode([(key, form_value(value)) for key, value in event.items()]).encode()


class HttpEventDestination:
    def __init__(
        self,
        url: str | None,
        *,
        name: str = "http",
        batch_size: int = 100,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        type_urls: Mapping[str, str] | None = None,
        json_form: bool = True,
        server_id: str | None = None,
    ) -> None:
        self.name = name
        self.kind = "http"
        # Each event type's URL: its own, else the common one.
        self.urls: dict[str, str] = {}
        for event_type in EVENT_TYPES:
            chosen = (type_urls or {}).get(event_type) or url
            if chosen:
                self.urls[event_type] = chosen
        if not self.urls:
            raise ValueError("an HTTP event destination needs a URL")
        self.event_types = frozenset(self.urls)
        shown = url or next(iter(self.urls.values()))
        self.target = display_url(shown)
        self.url = shown
        self.batch_size = batch_size if json_form else 1
        self.json_form = json_form
        self.server_id = server_id
        self._client = httpx.AsyncClient(
            timeout=timeout,
            follow_redirects=False,
            transport=transport,
            headers={"User-Agent": "vmta-events"},
        )

    def _runs(self, batch: Sequence[PendingEvent]) -> list[tuple[str, list[PendingEvent]]]:
        """The requests for ``batch``, in order: consecutive events for one URL, up to
        the batch size each."""
        runs: list[tuple[str, list[PendingEvent]]] = []
        for event in batch:
            url = self.urls.get(event.event_type) or self.url
            if runs and runs[-1][0] == url and len(runs[-1][1]) < self.batch_size:
                runs[-1][1].append(event)
            else:
                runs.append((url, [event]))
        return runs

    async def send(self, batch: Sequence[PendingEvent]) -> None:
        done = 0
        for url, chunk in self._runs(batch):
            objects = [greenarrow_event(e.id, e.payload, self.server_id) for e in chunk]
            if self.json_form:
                body = json.dumps(objects, separators=(",", ":")).encode()
                content_type = "application/json"
            else:
                body = form_body(objects[0])
                content_type = "application/x-www-form-urlencoded"
            shown = display_url(url)
            try:
                response = await self._client.post(
                    url, content=body, headers={"Content-Type": content_type}
                )
            except httpx.HTTPError as exc:
                reason = f"POST {shown}: {type(exc).__name__}: {exc}".rstrip(": ")
                raise EventDeliveryFailed(reason, done) from None
            if not 200 <= response.status_code < 300:
                raise EventDeliveryFailed(
                    f"POST {shown}: HTTP {response.status_code}", done
                ) from None
            done += len(chunk)

    async def close(self) -> None:
        await self._client.aclose()
