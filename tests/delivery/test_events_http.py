"""Delivery events reach a real HTTP receiver in GreenArrow's form: a deferral then a
success, a failure with its bounce_all, and nothing lost or doubled while the receiver
fails or is down. Mail goes through a real data plane to a real SMTP sink, on SQLite and
PostgreSQL."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from tests.delivery.conftest import RunningPlane, eventually
from tests.peers.http_receiver import HttpReceiver
from vmta.delivery.events.event_sender import SenderSettings
from vmta.delivery.events.event_setup import EventSettings
from vmta.store.suppressions import SuppressionRepository

QUICK = SenderSettings(poll_interval=0.05, retry_initial=0.05, retry_max=0.2)

MESSAGE = "X-GreenArrow-MtaID: relay-1\r\nFrom: sender@src.test\r\nSubject: hello\r\n\r\nbody\r\n"
# The campaign and tracking headers whose values events carry (contract §2.12, §5).
TRACKING = {
    "mailclass": ("X-GreenArrow-MailClass", "newsletter"),
    "sendid": ("X-GreenArrow-SendID", "2026-12-weekly"),
    "listid": ("X-GreenArrow-ListID", "42"),
    "instanceid": ("X-GreenArrow-InstanceID", "7"),
    "click_tracking_id": ("X-GreenArrow-Click-Tracking-ID", "ct-9f3a"),
}
TRACKED_MESSAGE = "".join(f"{h}: {v}\r\n" for h, v in TRACKING.values()) + MESSAGE


def events_for(receiver: HttpReceiver, queue_id: str) -> list[dict[str, Any]]:
    return [e for e in receiver.accepted_events() if e.get("message_id") == queue_id]


async def http_plane(plane_factory: Any, url: str, **settings: Any) -> RunningPlane:
    events = EventSettings(http_url=url, sender=QUICK, **settings)
    plane: RunningPlane = await plane_factory(events=events)
    return plane


async def test_deferral_then_success(
    plane_factory: Any, sink_factory: Any, http_receiver: HttpReceiver
) -> None:
    plane = await http_plane(plane_factory, http_receiver.url)
    sink = sink_factory()
    sink.script("RCPT", "451 4.7.1 Greylisted, try again later")
    relay_id = plane.add_relay("relay-1", sink.port)
    queue_id = await plane.asend(TRACKED_MESSAGE)
    size = plane.message(queue_id).size

    seen = await eventually(
        lambda: (
            len(events_for(http_receiver, queue_id)) >= 2 and events_for(http_receiver, queue_id)
        ),
        what="two events",
    )
    deferral, success = seen
    assert [e["status"] for e in seen] == ["deferral", "success"]
    assert all(e["event_type"] == "delivery_attempt" for e in seen)
    assert deferral["message"] == "451 4.7.1 Greylisted, try again later"
    assert (deferral["is_retry"], success["is_retry"]) == (0, 1)
    assert success["message"].startswith("250")
    for event in seen:
        assert event["email"] == "rcpt@dest.test"
        assert event["mtaid"] == "relay-1"
        assert event["outmtaid_ip"] == "127.0.0.2"  # the relay's source IP
        assert event["message_id"] == queue_id
        assert event["sender"] == "sender@src.test"
        assert isinstance(event["id"], int) and isinstance(event["event_time"], int)
        for field, (_header, value) in TRACKING.items():
            assert event[field] == value, field
        assert event["event_unique_id"] == str(event["id"])
        assert event["server_id"] == "vmta.test"  # the node's name
        assert event["outmtaid"] == relay_id and event["outmtaid_hostname"] == "out.vmta.test"
        # The relay server's destination, as connected to.
        assert (event["mx_hostname"], event["mx_ip"]) == ("127.0.0.1", "127.0.0.1")
        assert event["from_address"] == "sender@src.test"
        assert event["message_size"] == size > 0
        assert (
            isinstance(event["timestamp"], float)
            and int(event["timestamp"]) == (event["event_time"])
        )
        assert None not in (event.get(f) for f in ("outmtaid", "message_size", "injected_time"))
    # The headers themselves do not leave vmta.
    assert all(h.encode() not in m.data for h, _ in TRACKING.values() for m in sink.messages)
    assert deferral["id"] != success["id"]
    assert {p.content_type for p in http_receiver.posts} == {"application/json"}
    # GreenArrow's consumers bind an array: every POST is one, even for a single event.
    assert all(isinstance(p.body, list) and p.body for p in http_receiver.posts)


async def test_failure_and_bounce_all(
    plane_factory: Any, sink_factory: Any, http_receiver: HttpReceiver
) -> None:
    plane = await http_plane(plane_factory, http_receiver.url)
    sink = sink_factory()
    sink.refuse("gone@dest.test", "550 5.1.1 No such user")
    plane.add_relay("relay-1", sink.port)
    queue_id = await plane.asend(MESSAGE, recipients=["gone@dest.test"])

    seen = await eventually(
        lambda: (
            len(events_for(http_receiver, queue_id)) >= 3 and events_for(http_receiver, queue_id)
        ),
        what="failure, bounce_all and bounce_bad_address",
    )
    assert [(e["event_type"], e.get("status")) for e in seen[:2]] == [
        ("delivery_attempt", "failure"),
        ("bounce_all", "failure"),
    ]
    bounce = seen[1]
    assert bounce["email"] == "gone@dest.test"
    assert (bounce["bounce_type"], bounce["bounce_code"]) == ("h", 10)
    assert bounce["bounce_text"] == "550 5.1.1 No such user"
    assert bounce["synchronous"] is True


async def test_events_wait_while_the_receiver_fails_then_all_arrive_once(
    plane_factory: Any, sink_factory: Any, http_receiver: HttpReceiver
) -> None:
    http_receiver.status = 500
    plane = await http_plane(plane_factory, http_receiver.url, http_batch=2)
    sink = sink_factory()
    plane.add_relay("relay-1", sink.port)
    ids = [await plane.asend(MESSAGE) for _ in range(5)]
    await eventually(lambda: len(sink.messages) == 5, what="deliveries")
    await eventually(lambda: len(http_receiver.posts) >= 3, what="refused POSTs")
    assert http_receiver.accepted_events() == []

    http_receiver.status = 200
    await eventually(
        lambda: {e["message_id"] for e in http_receiver.accepted_events()} >= set(ids),
        what="every event after recovery",
    )
    accepted = http_receiver.accepted_events()
    assert all(n == 1 for n in Counter(e["id"] for e in accepted).values())
    assert sorted(e["message_id"] for e in accepted) == sorted(ids)
    assert all(isinstance(p.body, list) and len(p.body) <= 2 for p in http_receiver.posts)
    # The receiver has them before vmta stores the acknowledgement: wait for that.
    status = await eventually(
        lambda: (s := plane.plane.events.outbox.status(time.time())) and s[0].backlog == 0 and s,
        what="every acknowledgement stored",
    )
    assert [(s.name, s.backlog) for s in status] == [("http", 0)]
    assert status[0].last_error == f"POST {http_receiver.url}: HTTP 500"


async def test_events_wait_while_the_receiver_is_down(
    plane_factory: Any, sink_factory: Any, http_receiver: HttpReceiver
) -> None:
    http_receiver.stop()
    plane = await http_plane(plane_factory, http_receiver.url)
    sink = sink_factory()
    plane.add_relay("relay-1", sink.port)
    ids = [await plane.asend(MESSAGE) for _ in range(3)]
    await eventually(lambda: len(sink.messages) == 3, what="mail is delivered all the same")

    def waiting() -> Any:
        status = plane.plane.events.outbox.status(time.time())
        return status and status[0].backlog == 3 and status[0].last_error and status[0]

    status = await eventually(waiting, what="three events waiting, with the error")
    assert "ConnectError" in (status.last_error or "")

    http_receiver.start()  # back, on the same port
    await eventually(
        lambda: {e["message_id"] for e in http_receiver.accepted_events()} >= set(ids),
        what="every event once the receiver is back",
    )
    accepted = http_receiver.accepted_events()
    assert sorted(e["message_id"] for e in accepted) == sorted(ids)
    assert len({e["id"] for e in accepted}) == len(accepted)


async def test_each_type_to_its_own_url_in_arrays_that_never_mix(
    plane_factory: Any, sink_factory: Any, http_receiver: HttpReceiver
) -> None:
    bounces, bad = http_receiver.url_for("bounces"), http_receiver.url_for("bad")
    plane = await http_plane(
        plane_factory,
        http_receiver.url,
        http_type_urls={"bounce_all": bounces, "bounce_bad_address": bad},
    )
    sink = sink_factory()
    sink.refuse("gone@dest.test", "550 5.1.1 No such user")
    plane.add_relay("relay-1", sink.port)
    refused = await plane.asend(TRACKED_MESSAGE, recipients=["gone@dest.test"])
    delivered = await plane.asend(TRACKED_MESSAGE)

    await eventually(
        lambda: (
            len(events_for(http_receiver, refused)) >= 3 and events_for(http_receiver, delivered)
        ),
        what="every event",
    )
    routes = {"/events": "delivery_attempt", "/bounces": "bounce_all", "/bad": "bounce_bad_address"}
    for post in http_receiver.posts:
        assert isinstance(post.body, list) and post.body  # an array, even for one event
        assert {e["event_type"] for e in post.body} == {routes[post.path]}, post.path
    accepted = http_receiver.accepted_events()
    bad_address = next(e for e in accepted if e["event_type"] == "bounce_bad_address")
    assert (bad_address["email"], bad_address["listid"], bad_address["sendid"]) == (
        "gone@dest.test",
        "42",
        "2026-12-weekly",
    )
    assert bad_address["message_id"] == refused and "status" not in bad_address


async def test_form_encoded_mode_one_event_per_post(
    plane_factory: Any, sink_factory: Any, http_receiver: HttpReceiver
) -> None:
    plane = await http_plane(plane_factory, http_receiver.url, http_json=False)
    sink = sink_factory()
    sink.refuse("gone@dest.test", "550 5.1.1 No such user")
    plane.add_relay("relay-1", sink.port)
    queue_id = await plane.asend(MESSAGE, recipients=["gone@dest.test"])

    seen = await eventually(
        lambda: len(seen := events_for(http_receiver, queue_id)) >= 3 and seen,
        what="three form posts",
    )
    assert {p.content_type for p in http_receiver.posts} == {"application/x-www-form-urlencoded"}
    assert all(isinstance(p.body, dict) for p in http_receiver.posts)  # one event each
    attempt, bounce, bad = seen
    assert attempt["event_type"] == "delivery_attempt" and attempt["status"] == "failure"
    assert attempt["id"] == attempt["event_unique_id"] and attempt["is_retry"] == "0"
    assert attempt["listid"] == "" and attempt["mx_ip"] == "127.0.0.1"  # null is empty
    assert (bounce["bounce_type"], bounce["bounce_code"], bounce["synchronous"]) == (
        "h",
        "10",
        "true",
    )
    assert bad["event_type"] == "bounce_bad_address"


async def test_a_bad_address_is_suppressed_and_never_tried_again(
    plane_factory: Any, sink_factory: Any, http_receiver: HttpReceiver
) -> None:
    plane = await http_plane(plane_factory, http_receiver.url)
    sink = sink_factory()
    sink.refuse("gone@dest.test", "550 5.1.1 No such user")
    plane.add_relay("relay-1", sink.port)
    first = await plane.asend(TRACKED_MESSAGE, recipients=["gone@dest.test"])
    await eventually(
        lambda: [
            e for e in events_for(http_receiver, first) if e["event_type"] == "bounce_bad_address"
        ],
        what="bounce_bad_address",
    )
    with plane.store.read() as conn:
        entry = SuppressionRepository(conn).get("gone@dest.test")
    assert entry is not None and (entry.code, entry.extended) == (550, "5.1.1")
    rcpts_before = sum(c.commands.count("RCPT") for c in sink.connections)
    plane.plane.config.invalidate()

    second = await plane.asend(TRACKED_MESSAGE, recipients=["gone@dest.test"])
    seen = await eventually(
        lambda: len(events_for(http_receiver, second)) >= 2 and events_for(http_receiver, second),
        what="the second message's failure",
    )
    assert [e["event_type"] for e in seen] == ["delivery_attempt", "bounce_all"]  # once only
    assert seen[0]["mx_ip"] is None  # no connection: the suppression refused it
    assert sum(c.commands.count("RCPT") for c in sink.connections) == rcpts_before
