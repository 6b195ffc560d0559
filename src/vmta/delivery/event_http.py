"""HTTP POST event destination, as GreenArrow's Event Notification System posts events:
``Content-Type: application/json``, one event object per request, or with a batch size
above 1 a JSON array of up to that many; any 2xx status acknowledges every event of the
request, anything else (a redirect included) or no answer leaves them queued."""

from __future__ import annotations

import json
from collections.abc import Sequence

import httpx

from vmta.delivery.event_sender import EventDeliveryFailed
from vmta.domain.delivery_event import EVENT_TYPES, greenarrow_event
from vmta.domain.feedback_events import SCOMP
from vmta.store.event_outbox import PendingEvent


def display_url(url: str) -> str:
    """The URL for logs and GET /api/events: without user information or query (either
    may carry a secret)."""
    parsed = httpx.URL(url)
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.host}{port}{parsed.path}"


class HttpEventDestination:
    def __init__(
        self,
        url: str,
        *,
        name: str = "http",
        batch_size: int = 1,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        self.kind = "http"
        self.target = display_url(url)
        self.event_types = frozenset((*EVENT_TYPES, SCOMP))
        self.url = url
        self.batch_size = batch_size
        self._client = httpx.AsyncClient(
            timeout=timeout,
            follow_redirects=False,
            transport=transport,
            headers={"User-Agent": "vmta-events"},
        )

    async def send(self, batch: Sequence[PendingEvent]) -> None:
        done = 0
        for start in range(0, len(batch), self.batch_size):
            chunk = batch[start : start + self.batch_size]
            objects = [greenarrow_event(e.id, e.payload) for e in chunk]
            body = objects[0] if self.batch_size == 1 else objects
            try:
                response = await self._client.post(
                    self.url,
                    content=json.dumps(body, separators=(",", ":")).encode(),
                    headers={"Content-Type": "application/json"},
                )
            except httpx.HTTPError as exc:
                reason = f"POST {self.target}: {type(exc).__name__}: {exc}".rstrip(": ")
                raise EventDeliveryFailed(reason, done) from None
            if not 200 <= response.status_code < 300:
                raise EventDeliveryFailed(
                    f"POST {self.target}: HTTP {response.status_code}", done
                ) from None
            done += len(chunk)

    async def close(self) -> None:
        await self._client.aclose()
