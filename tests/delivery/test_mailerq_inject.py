"""POST /v1/inject on a real API listener in the data plane's event loop (as `vmta serve`
runs it): a MailerQ message naming an external MTA's public_ip leaves through a real
tinyproxy; bad messages are 400 and store nothing. SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.delivery.conftest import ExternalProxy, RunningPlane, api_client, eventually
from tests.delivery.test_external_mta_delivery import PUBLIC_IP, add_external
from tests.peers.sink import RecordingSink
from vmta.domain.config.external_mta import ExternalMtaProtocol

pytestmark = pytest.mark.peers

MIME = (
    "From: info@src.test\r\nTo: user@c.test\r\nx-mq-tag: inner\r\nSubject: injected\r\n\r\nhi\r\n"
)


@pytest.fixture
async def api(world: Any) -> AsyncIterator[tuple[httpx.AsyncClient, RunningPlane, Any]]:
    plane, sinks = world
    async with api_client(plane) as client:
        yield client, plane, sinks


async def test_inject_through_the_external_mta_of_its_public_ip(
    api: Any, external_proxy: ExternalProxy
) -> None:
    client, plane, sinks = api
    protocol = ExternalMtaProtocol(external_proxy.protocol)
    add_external(plane, protocol, connect_port=external_proxy.port)
    response = await client.post(
        "/v1/inject",
        json={
            "envelope": "info@src.test",
            "recipient": "user@c.test",
            "mime": MIME,
            "ips": [PUBLIC_IP],
            "tags": ["welcome"],
            "custom": {"kept": True},
        },
    )
    assert response.status_code == 200, response.text
    queue_id = response.json()["id"]
    assert plane.message(queue_id) is not None  # committed before the answer
    sink: RecordingSink = sinks["127.0.0.23"]
    await eventually(lambda: sink.messages, what="delivery through the proxy")
    assert sink.connections[0].peer_ip == external_proxy.egress_ip
    assert sink.connections[0].ehlo_name == "vmta.test"  # no IP address VirtualMTA for it
    seen = sink.messages[0]
    assert seen.mail_from == "info@src.test" and seen.rcpt_tos == ["user@c.test"]
    assert b"x-mq-" not in seen.data.lower() and b"Subject: injected" in seen.data
    view = await eventually(lambda: (m := plane.message(queue_id)) and m.attempts and m)
    assert view.attempts[0]["source_ip"] == PUBLIC_IP


async def test_bad_messages_are_400_and_store_nothing(api: Any) -> None:
    client, plane, _sinks = api
    bad = [
        ({"mime": MIME}, "recipient is required."),
        ({"recipient": "user@c.test", "mime": MIME, "ips": "1.2.3"}, "ips must hold IPv4"),
        ({"recipient": "user@c.test", "mime": MIME, "maxattempts": "x"}, "maxattempts must be"),
        ({"recipient": "user@c.test"}, "mime is required."),
    ]
    for body, expected in bad:
        response = await client.post("/v1/inject", json=body)
        assert response.status_code == 400, response.text
        assert expected in response.json()["error"]
    response = await client.post(
        "/v1/inject",
        content=b"recipient=user%40c.test&mime=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 415
    response = await client.get("/v1/inject")
    assert response.status_code == 405 and response.headers["Allow"] == "POST"
    assert plane.plane.spool.inspector.list_messages(None, 10) == []
