"""An ``X-GreenArrow-MtaID`` that can name nothing sends the message the default way at
once (GreenArrow's rule), on SQLite and PostgreSQL: never ``451 internal routing error``
until it expires, and a full-width or superscript digit never selects an id."""

from __future__ import annotations

from typing import Any

import pytest

from tests.delivery.conftest import RunningPlane, eventually
from tests.peers.sink import RecordingSink


def full_width(number: int) -> str:
    return "".join(chr(0xFF10 + int(d)) for d in str(number))


@pytest.mark.parametrize(
    "selector",
    ["99999999999999999999", "9223372036854775808", "2147483648", "\u00b2", "full-width"],
)
async def test_selector_that_names_nothing_goes_to_the_default(
    plane: RunningPlane, sink_factory: Any, selector: str
) -> None:
    fallback: RecordingSink = sink_factory()
    target: RecordingSink = sink_factory()
    target_id = plane.add_relay("target", target.port)
    plane.add_relay("fallback", fallback.port)
    plane.set_default("fallback")
    if selector == "full-width":
        selector = full_width(target_id)  # looks like the target's id, is not ASCII
    message = f"X-GreenArrow-MtaID: {selector}\r\nSubject: s\r\n\r\nbody\r\n".encode()
    queue_id = await plane.asend(message)

    delivered = await eventually(lambda: fallback.messages, what="delivery to the default")
    assert b"X-GreenArrow-MtaID" not in delivered[0].data
    assert target.messages == []
    view = await eventually(
        lambda: (m := plane.message(queue_id)) and m.recipients[0]["state"] == "delivered" and m,
        what="the delivery to be recorded",
    )
    assert view.attempts[0]["virtual_mta"] == "fallback"


async def test_plain_ascii_id_still_selects(plane: RunningPlane, sink_factory: Any) -> None:
    fallback: RecordingSink = sink_factory()
    target: RecordingSink = sink_factory()
    target_id = plane.add_relay("target", target.port)
    plane.add_relay("fallback", fallback.port)
    plane.set_default("fallback")
    await plane.asend(f"X-GreenArrow-MtaID: {target_id}\r\n\r\nbody\r\n".encode())
    await eventually(lambda: target.messages, what="delivery to the selected relay")
    assert fallback.messages == []
