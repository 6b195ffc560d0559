"""``vmta_messages_accepted_total`` counts every message committed to the spool, by how it
came: SMTP injection, GreenArrow's HTTP Submission API and MailerQ's ``/v1/inject``
(``http``), and vmta's own bounces (``bounce``), read from the data plane's /metrics
registry after a real sink took the mail. SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from tests.conftest import TEST_SECRET
from tests.delivery.conftest import RunningPlane, eventually
from tests.delivery.test_http_submission import DOCUMENT, URL, client_for
from tests.peers.sink import RecordingSink

MIME = "From: a@src.test\r\nTo: b@dest.test\r\nSubject: counted\r\n\r\nbody\r\n"


def accepted(plane: RunningPlane, source: str) -> float:
    value = plane.plane.metrics.registry.get_sample_value(
        "vmta_messages_accepted_total", {"source": source}
    )
    return value or 0.0


async def test_every_accepted_message_is_counted_by_how_it_came(
    plane: RunningPlane, sink_factory: Any
) -> None:
    sink: RecordingSink = sink_factory()
    sink.refuse("gone@dest.test")
    plane.add_relay("relay-2", sink.port)
    plane.set_default("relay-2")

    await plane.asend(MIME, recipients=["b@dest.test"])
    await plane.asend(MIME, recipients=["gone@dest.test"])  # refused: vmta bounces it
    async with client_for(plane) as client:
        response = await client.post(URL, json=DOCUMENT)
        assert response.status_code == 200, response.text
        response = await client.post(
            "/v1/inject",
            json={"envelope": "a@src.test", "recipient": "c@dest.test", "mime": MIME},
            headers={"Authorization": f"Bearer {TEST_SECRET}"},
        )
        assert response.status_code == 200, response.text

    # Three messages and one bounce (null reverse-path) reach the sink.
    await eventually(
        lambda: len(sink.messages) >= 4 and any(m.mail_from == "<>" for m in sink.messages),
        what="the messages and the bounce",
    )
    assert accepted(plane, "smtp") == 2
    assert accepted(plane, "http") == 2
    assert accepted(plane, "bounce") == 1
    assert accepted(plane, "amqp") == 0
