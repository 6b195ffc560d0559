"""How the event sender learns of new events: a commit of outcomes wakes it (events leave
at once, not at the next poll), and its poll finds events it was not told about, such as
those another node sharing the database wrote. A real HTTP receiver, SQLite and
PostgreSQL; no timing is asserted: each test would wait in vain (and fail at its bound)
if the way under test did not work."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert

from tests.delivery.conftest import eventually
from tests.delivery.test_events_http import MESSAGE, events_for
from tests.manual_clock import ManualClock
from tests.peers.http_receiver import HttpReceiver
from vmta.delivery.events.event_http import HttpEventDestination
from vmta.delivery.events.event_sender import EventSender, SenderSettings
from vmta.delivery.events.event_setup import EventSettings
from vmta.store.event_outbox import EventOutbox
from vmta.store.store import Store
from vmta.store.tables import event_deliveries, events

# An hour between polls: within a test's bound, only a wake-up can make an event leave.
NO_POLL = SenderSettings(poll_interval=3600.0, retry_initial=0.05, retry_max=0.2)


async def test_committed_outcomes_wake_the_sender(
    plane_factory: Any, sink_factory: Any, http_receiver: HttpReceiver
) -> None:
    plane = await plane_factory(events=EventSettings(http_url=http_receiver.url, sender=NO_POLL))
    sink = sink_factory()
    sink.script("RCPT", "451 4.7.1 Greylisted")
    plane.add_relay("relay-1", sink.port)
    queue_id = await plane.asend(MESSAGE)

    seen = await eventually(
        lambda: (
            len(events_for(http_receiver, queue_id)) >= 2 and events_for(http_receiver, queue_id)
        ),
        what="the deferral and the success, each sent when its outcome committed",
    )
    assert [e["status"] for e in seen] == ["deferral", "success"]


def another_nodes_event(store: Store, email: str) -> int:
    """An event as another node's recording transaction writes it (vmta.store.event_outbox)."""
    with store.write() as conn:
        event_id = conn.execute(
            insert(events).returning(events.c.id),
            {
                "created_at": 1_700_000_000.0,
                "event_type": "delivery_attempt",
                "message_id": "Q-OTHER-NODE",
                "payload": {"greenarrow": {"event_type": "delivery_attempt", "email": email}},
            },
        ).scalar_one()
        conn.execute(insert(event_deliveries), {"event_id": event_id, "destination": "http"})
    return int(event_id)


async def test_the_poll_finds_events_no_commit_here_announced(
    store: Store, http_receiver: HttpReceiver
) -> None:
    clock = ManualClock()
    sender = EventSender(
        EventOutbox(store, "node-here"),
        [HttpEventDestination(http_receiver.url)],
        clock,
        SenderSettings(poll_interval=1.0),
    )
    await sender.start()
    try:
        event_id = another_nodes_event(store, "other@dest.test")

        # Nothing here committed it, so nothing wakes the sender: its next poll (one
        # poll interval on its clock) must find it. Advanced until then, in steps, because
        # the sender may not have gone idle yet when the clock first moves.
        def arrived() -> bool:
            clock.advance(1.0)
            return any(e["id"] == event_id for e in http_receiver.accepted_events())

        await eventually(arrived, what="the event at the next poll")
        (event,) = http_receiver.accepted_events()
        assert event["email"] == "other@dest.test"
        await eventually(
            lambda: EventOutbox(store, "reader").status(clock.now())[0].backlog == 0,
            what="the acknowledgement stored",
        )
    finally:
        await sender.stop()
