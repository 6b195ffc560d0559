"""A configuration change made through the API of the process that delivers applies to
the next message it routes, not up to a second later (api/app.py,
delivery/routing/config_view.py): a client that changes a relay server and sends through
it at once gets what it set. The README's walk-through does exactly that when it is run
twice in a row."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.delivery.conftest import RunningPlane, api_client, eventually

pytestmark = pytest.mark.one_database  # the engine's cache, not the database

RELAYS = "/ga/api/v3/eng/relay_servers"


@pytest.fixture
async def api(plane: RunningPlane) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(plane) as client:
        yield client


async def send(plane: RunningPlane, subject: str) -> None:
    message = f"X-GreenArrow-MtaID: relay\r\nSubject: {subject}\r\n\r\nhello\r\n"

    def deliver() -> None:
        with smtplib.SMTP("127.0.0.1", plane.smtp_port, timeout=30) as client:
            client.sendmail("me@src.test", ["you@dest.test"], message)

    await asyncio.to_thread(deliver)


async def test_a_relay_server_changed_through_the_api_is_used_by_the_next_message(
    plane: RunningPlane, api: httpx.AsyncClient, sink_factory: Any
) -> None:
    first, second = sink_factory(), sink_factory()
    created = await api.post(
        RELAYS,
        json={
            "relay_server": {
                "name": "relay",
                "source_ip": {"ip": "127.0.0.2", "hostname": "out.vmta.test"},
                "destination": {"hostname": "127.0.0.1", "port": first.port},
                "throttle_limits": {"max_concurrent_connections": 1, "max_messages_per_hour": 0},
            }
        },
    )
    assert created.status_code == 200, created.text
    relay_id = created.json()["data"]["relay_server"]["id"]
    await send(plane, "one")  # routed by the relay server as created, which is cached
    await eventually(lambda: len(first.messages) == 1, what="the first message at the first sink")
    changed = await api.put(
        f"{RELAYS}/{relay_id}",
        json={"relay_server": {"destination": {"hostname": "127.0.0.1", "port": second.port}}},
    )
    assert changed.status_code == 200, changed.text
    await send(plane, "two")  # well within the cache's second
    await eventually(
        lambda: len(second.messages) == 1, what="the second message at the second sink"
    )
    assert len(first.messages) == 1
