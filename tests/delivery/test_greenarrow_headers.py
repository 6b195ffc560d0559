"""Every X-GreenArrow-* header is removed before delivery; the campaign and tracking ids
are kept with the message (GreenArrow injection headers). Asserted on what a real SMTP
sink received and on the spool row, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from tests.delivery.conftest import RunningPlane, eventually
from tests.peers.sink import RecordingSink
from vmta.domain.message.message_headers import split_headers
from vmta.store.tables import messages

EVERY_HEADER = (
    "X-GreenArrow-MtaID: relay-1\r\n"
    "X-GreenArrow-MailClass: newsletter\r\n"
    "X-GreenArrow-SendID: send-42\r\n"
    "X-GreenArrow-ListID: list-7\r\n"
    "X-GreenArrow-InstanceID: inst-3\r\n"
    "X-GreenArrow-Click-Tracking-ID: track-99\r\n"
    "X-GreenArrow-Something-New: also removed\r\n"
    "From: sender@src.test\r\n"
    "Subject: campaign\r\n"
    "\r\n"
    "body\r\n"
)


async def test_no_greenarrow_header_reaches_the_recipient(
    plane: RunningPlane, sink_factory: Any
) -> None:
    sink: RecordingSink = sink_factory()
    plane.add_relay("relay-1", sink.port)
    queue_id = await plane.asend(EVERY_HEADER)

    seen = (await eventually(lambda: sink.messages, what="delivery"))[0]
    names = [h.split(b":", 1)[0].lower() for h in split_headers(seen.data).headers]
    assert names == [b"received", b"from", b"subject"]
    assert b"x-greenarrow" not in seen.data.lower()

    with plane.store.read() as conn:
        kept = conn.execute(
            select(messages.c.kept_headers).where(messages.c.id == queue_id)
        ).scalar_one()
    assert kept == {
        "X-GreenArrow-MailClass": "newsletter",
        "X-GreenArrow-SendID": "send-42",
        "X-GreenArrow-ListID": "list-7",
        "X-GreenArrow-InstanceID": "inst-3",
        "X-GreenArrow-Click-Tracking-ID": "track-99",
    }
