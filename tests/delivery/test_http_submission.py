"""GreenArrow's HTTP Submission API (``POST /api/v1/send.json``) injects through the same
intake as SMTP: ``mtaid`` picks the relay whose real sink receives the message, success
comes after commit, and the API's own answers. SQLite and PostgreSQL."""

from __future__ import annotations

import email
import gzip
import json
from email.message import Message
from typing import Any

import httpx
from sqlalchemy import select

from tests.conftest import TEST_SECRET
from tests.delivery.conftest import RunningPlane, eventually
from tests.peers.sink import RecordingSink
from vmta.api.app import create_app
from vmta.api.ports import ApiPorts
from vmta.store.tables import messages

URL = "/api/v1/send.json"

# The vendor's example document, with vmta credentials and an mtaid.
DOCUMENT: dict[str, Any] = {
    "username": "admin",
    "password": TEST_SECRET,
    "message": {
        "html": "html content goes <b>here</b>",
        "text": "text content goes here",
        "subject": "this is the subject",
        "to": [{"email": "recipient@example.com", "name": "John Doe"}],
        "from_email": "from@example.com",
        "from_name": "Your Company",
        "mtaid": "relay-2",
        "mailclass": "transactional",
    },
}


def client_for(plane: RunningPlane) -> httpx.AsyncClient:
    app = create_app(ApiPorts(plane.store, data_plane=plane.plane.api_hooks()))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://vmta")


async def test_mtaid_selects_the_relay_whose_sink_receives_it(
    plane: RunningPlane, sink_factory: Any
) -> None:
    one: RecordingSink = sink_factory()
    two: RecordingSink = sink_factory()
    plane.add_relay("relay-1", one.port)
    plane.add_relay("relay-2", two.port)
    async with client_for(plane) as client:
        response = await client.post(URL, json=DOCUMENT)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] == 1 and set(body) == {"success", "message_id", "queue_id"}
    # The queue id names the message in vmta's own API.
    assert plane.message(body["queue_id"]) is not None
    assert body["message_id"].startswith("mid-") and body["message_id"].endswith("@vmta.test")

    seen = (await eventually(lambda: two.messages, what="delivery through relay-2"))[0]
    assert one.messages == []
    assert seen.mail_from == "from@example.com" and seen.rcpt_tos == ["recipient@example.com"]
    parsed: Message = email.message_from_bytes(seen.data)
    assert parsed["Message-ID"] == f"<{body['message_id']}>"
    assert parsed["Subject"] == "this is the subject"
    assert parsed["From"] == "Your Company <from@example.com>"
    assert parsed["To"] == "John Doe <recipient@example.com>"
    assert parsed.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in parsed.walk()][1:]
    assert parts == ["text/plain", "text/html"]
    assert b"x-greenarrow" not in seen.data.lower()
    with plane.store.read() as conn:
        kept = conn.execute(select(messages.c.kept_headers, messages.c.vmta_selector)).one()
    assert kept.kept_headers == {"X-GreenArrow-MailClass": "transactional"}
    assert kept.vmta_selector == "relay-2"


async def test_mail_class_as_the_doppler_sdk_sends_it_is_kept_as_mailclass(
    plane: RunningPlane, sink_factory: Any
) -> None:
    sink: RecordingSink = sink_factory()
    plane.add_relay("relay-2", sink.port)
    message = {k: v for k, v in DOCUMENT["message"].items() if k != "mailclass"}
    document = {**DOCUMENT, "message": {**message, "mail_class": "Transactional"}}
    async with client_for(plane) as client:
        response = await client.post(URL, json=document)
    assert response.status_code == 200, response.text
    await eventually(lambda: sink.messages, what="the delivery")
    assert b"x-greenarrow" not in sink.messages[0].data.lower()
    with plane.store.read() as conn:
        kept = conn.execute(select(messages.c.kept_headers)).scalar_one()
    assert kept == {"X-GreenArrow-MailClass": "Transactional"}


async def test_batch_bearer_gzip_and_per_message_errors(
    plane: RunningPlane, sink_factory: Any
) -> None:
    sink: RecordingSink = sink_factory()
    plane.add_relay("relay-2", sink.port)
    good = {**DOCUMENT["message"], "id": "first"}
    bad = {**DOCUMENT["message"], "id": "second", "from_email": "not an address"}
    payload = gzip.compress(json.dumps({"messages": [good, bad]}).encode())
    headers = {
        "Authorization": f"Bearer {TEST_SECRET}",
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
    }
    async with client_for(plane) as client:
        response = await client.post(URL, content=payload, headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] == 1 and body["attempted"] == 2
    first, second = body["messages"]
    assert first["success"] == 1 and first["id"] == "first" and first["message_id"]
    assert second == {
        "success": 0,
        "id": "second",
        "error": "message.from_email must be an email address",
    }
    await eventually(lambda: sink.messages, what="the good message")
    assert len(sink.messages) == 1


async def test_refusals_in_the_api_format(plane: RunningPlane) -> None:
    async with client_for(plane) as client:
        wrong = {**DOCUMENT, "password": "wrong-secret"}
        response = await client.post(URL, json=wrong)
        assert response.status_code == 401
        assert response.json() == {"success": 0, "error": "incorrect username/password"}
        assert "WWW-Authenticate" in response.headers
        empty = await client.post(URL, content=b"")
        assert empty.status_code == 400
        assert empty.json() == {"success": 0, "error": "no data in POST or PUT payload"}
        no_subject = {**DOCUMENT, "message": {**DOCUMENT["message"], "subject": None}}
        refused = await client.post(URL, json=no_subject)
        assert refused.status_code == 400
        assert refused.json() == {"success": 0, "error": "message.subject is required"}
    with plane.store.read() as conn:
        assert conn.execute(select(messages.c.id)).first() is None  # nothing was queued


async def test_other_methods_still_need_credentials(plane: RunningPlane) -> None:
    async with client_for(plane) as client:
        response = await client.get(URL)
    assert response.status_code == 401
