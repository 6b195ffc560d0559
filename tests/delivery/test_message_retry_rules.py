"""A message's own retry rules (MailerQ ``maxattempts``, ``retries``) as the engine applies
them, on a manual clock against a destination that always refuses."""

from __future__ import annotations

from typing import Any

from tests.delivery.engine_harness import Harness
from vmta.domain.config.virtual_mta import Limits
from vmta.domain.message.arrival import Arrival


async def inject_with(h: Harness, headers: str) -> str:
    data = f"{headers}Subject: own rules\r\n\r\nbody\r\n".encode()
    arrival = Arrival("s@src.test", ["r@dest.test"], data, "127.0.0.1", "c", None, False)
    queue_id = await h.plane.intake.accept(arrival)
    await h.settle()
    return queue_id


async def test_maxattempts_fails_the_recipient_after_that_many_attempts(
    harness_factory: Any,
) -> None:
    h: Harness = await harness_factory(failure_delay=5.0)
    h.transport.refuse = True
    h.add_relay("dead", Limits(1, 0))
    await inject_with(h, "x-mq-maxattempts: 2\r\n")
    first = lambda: h.recipients()[0]  # noqa: E731 - the message's one recipient
    await h.until(lambda: first()["state"] == "failed", 400, step=1.0)
    assert first()["attempts"] == 2  # the default schedule would have gone on for an hour
    replies = [a["reply"] for a in h.attempts()]
    assert any("maxattempts 2" in reply for reply in replies)


async def test_retries_set_the_delays_between_attempts(harness_factory: Any) -> None:
    h: Harness = await harness_factory(failure_delay=1.0)
    h.transport.refuse = True
    h.add_relay("dead", Limits(1, 0))
    await inject_with(h, "x-mq-retries: 10\r\n")
    await h.until(lambda: h.recipients()[0]["attempts"] >= 1, 30)
    row = h.recipients()[0]
    # Deferred 10 s after the attempt (the default schedule says 60 s).
    assert row["state"] == "queued"
    assert 9.0 <= row["next_attempt_at"] - h.clock.now() <= 10.5
