"""Bounces end: a notification that fails is not notified again, and mail from the null
sender gets none (RFC 5321 §4.5.5, RFC 3464). On the manual-clock harness, so that
"nothing more happens" is checked after the engine has done everything that an hour of
its time allows, not after a sleep."""

from __future__ import annotations

from typing import Any

from tests.delivery.engine_harness import Harness
from vmta.domain.attempts.delivery_outcome import ReplyLine
from vmta.domain.config.virtual_mta import Limits

REFUSED = ReplyLine(550, "5.1.1 no such user")


async def test_a_failing_bounce_does_not_bounce(harness_factory: Any) -> None:
    h: Harness = await harness_factory()
    h.transport.rcpt_reply = REFUSED  # every recipient, the bounce's too
    h.add_relay("relay", Limits(0, 0))
    await h.inject(1)
    await h.until(lambda: len(h.recipients()) == 2, 60)  # the message, then its bounce
    await h.run_for(3600.0, step=30.0)  # an hour of retries and notifications, if any

    original, bounce = h.recipients()
    assert original["state"] == "failed" and bounce["state"] == "failed"
    assert [s.recipients for s in h.transport.sent] == [["r0@dest.test"], ["s@src.test"]]
    assert b"no such user" in h.transport.sent[1].data  # the notification said why


async def test_null_sender_gets_no_bounce(harness_factory: Any) -> None:
    h: Harness = await harness_factory()
    h.transport.rcpt_reply = REFUSED
    h.add_relay("relay", Limits(0, 0))
    await h.inject(1, sender="")
    await h.until(lambda: h.recipients()[0]["state"] == "failed", 60)
    await h.run_for(3600.0, step=30.0)

    assert len(h.recipients()) == 1
    assert [s.recipients for s in h.transport.sent] == [["r0@dest.test"]]
