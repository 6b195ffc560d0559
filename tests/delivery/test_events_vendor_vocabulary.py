# ruff: noqa: F401, F811 - broker and queues are fixtures of test_events_rabbitmq
"""MailerQ's result JSON as a consumer of MailerQ reads it, from the real RabbitMQ, and
GreenArrow's events as its consumers bind them, at a real HTTP receiver: every attempt
reaches real SMTP sinks through MX records that a real dnsmasq publishes, and the result
is compared field by field with the vendors' vocabularies (MailerQ's ``state`` is where
the attempt ended, its ``result`` one of accepted, error, timeout, lost, invalid).

Cases: success, refusal at RCPT, refusal after the final dot, a connection lost after
the final dot, connection refused, a
domain that does not exist and DNS that fails, a message that expired. SQLite and
PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from tests.delivery.conftest import eventually, insert, ip_vmta
from tests.delivery.test_events_rabbitmq import (
    AMQP_URL,
    QUICK,
    broker,
    collect,
    queues,
)
from tests.free_ports import free_port
from tests.peers.dns import DnsmasqServer, DnsZone
from tests.peers.http_receiver import HttpReceiver
from tests.peers.sink import DROP
from vmta.delivery.events.event_setup import EventSettings
from vmta.domain.reports.mailerq_result import RESULTS, STATES

pytestmark = pytest.mark.peers

MESSAGE = "From: sender@src.test\r\nSubject: hi\r\n\r\nbody\r\n"
# Every key MailerQ writes in one entry of ``results``.
RESULT_KEYS = {
    "time",
    "from",
    "to",
    "mta",
    "messages",
    "code",
    "status",
    "description",
    "dsn",
    "state",
    "result",
}


@pytest.fixture
async def world(
    plane_factory: Any,
    dnsmasq: DnsmasqServer,
    sink_factory: Any,
    queues: dict[str, str],
    http_receiver: HttpReceiver,
) -> Any:
    """ok.test's MX is a sink on 127.0.0.23; down.test's MX has an address where
    nothing listens; a plane sending from the IP address VirtualMTA ``ip-1``
    (127.0.0.2) with both event destinations."""
    port = free_port()
    zone = (
        DnsZone()
        .mx("ok.test", "mx.ok.test", 10)
        .host("mx.ok.test", "127.0.0.23")
        .mx("down.test", "mx.down.test", 10)
        .host("mx.down.test", "127.0.0.26")
    )
    dnsmasq.start(zone)
    sink = sink_factory(host="127.0.0.23", port=port)
    events = EventSettings(
        http_url=http_receiver.url,
        rabbitmq_url=AMQP_URL,
        rabbitmq_queues=queues,
        sender=QUICK,
    )
    plane = await plane_factory(
        dns_servers=(dnsmasq.address,), delivery_port=port, recheck=0.3, events=events
    )
    ip_id = insert(plane, ip_vmta("ip-1"))
    plane.set_default("ip-1")
    return plane, sink, ip_id


def check_vocabulary(entry: dict[str, Any]) -> None:
    """What MailerQ's consumers rely on for every entry."""
    assert set(entry) == RESULT_KEYS
    assert entry["state"] in STATES and entry["result"] in RESULTS
    assert entry["result"] != "accepted" or entry["state"] == "message"
    assert isinstance(entry["messages"], int) and isinstance(entry["dsn"], bool)
    assert isinstance(entry["code"], int)


def last(result: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = result["results"][-1]
    for each in result["results"]:
        check_vocabulary(each)
    return entry


def http_events(receiver: HttpReceiver, queue_id: str) -> list[dict[str, Any]]:
    return [e for e in receiver.accepted_events() if e["message_id"] == queue_id]


def of(queue_id: str, found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in found if m["vmta_queue_id"] == queue_id]


async def wait_for(broker: Any, queues: dict[str, str], kind: str, queue_id: str) -> Any:
    got = await collect(broker, queues, lambda g: of(queue_id, g[kind]))
    return of(queue_id, got[kind])[0], got


async def test_success(world: Any, broker: Any, queues: dict[str, str]) -> None:
    plane, sink, _ip_id = world
    queue_id = await plane.asend(MESSAGE, recipients=["jane@ok.test"])
    got = await collect(
        broker, queues, lambda g: of(queue_id, g["success"]) and of(queue_id, g["results"])
    )
    (result,) = of(queue_id, got["success"])
    entry = last(result)
    assert entry["time"] and len(entry["time"]) == len("2026-12-07 10:00:00")
    assert (entry["state"], entry["result"], entry["code"]) == ("message", "accepted", 250)
    assert (entry["from"], entry["to"], entry["mta"]) == ("127.0.0.2", "127.0.0.23", "mx.ok.test")
    assert entry["status"] == "2.0.0" and entry["description"] == "Message accepted"
    assert entry["messages"] == 1 and entry["dsn"] is False  # the sink offers no DSN
    assert of(queue_id, got["results"]) == [result]
    assert [t.rcpt_tos for t in sink.messages] == [["jane@ok.test"]]


async def test_refusal_at_rcpt(world: Any, broker: Any, queues: dict[str, str]) -> None:
    plane, sink, _ip_id = world
    sink.refuse("gone@ok.test", "550 5.1.1 No such user")
    queue_id = await plane.asend(MESSAGE, recipients=["gone@ok.test"])
    result, _ = await wait_for(broker, queues, "failure", queue_id)
    entry = last(result)
    assert (entry["state"], entry["result"]) == ("rcptto", "error")
    assert (entry["code"], entry["status"], entry["description"]) == (
        550,
        "5.1.1",
        "No such user",
    )
    assert (entry["to"], entry["mta"]) == ("127.0.0.23", "mx.ok.test")


async def test_refusal_after_the_final_dot(
    world: Any,
    broker: Any,
    queues: dict[str, str],
) -> None:
    plane, sink, _ip_id = world
    sink.script("DATA", "554 5.6.0 Content rejected")
    queue_id = await plane.asend(MESSAGE, recipients=["jane@ok.test"])
    result, _ = await wait_for(broker, queues, "failure", queue_id)
    entry = last(result)
    assert (entry["state"], entry["result"], entry["code"]) == ("message", "error", 554)
    assert sink.transactions[0].reply.startswith("554")  # the sink did refuse the data


async def test_connection_lost_after_the_final_dot(
    world: Any, broker: Any, queues: dict[str, str]
) -> None:
    plane, sink, _ip_id = world
    sink.script("DATA", DROP)  # the sink cuts the connection instead of answering
    queue_id = await plane.asend(MESSAGE, recipients=["jane@ok.test"])
    retry, _ = await wait_for(broker, queues, "retry", queue_id)
    entry = last(retry)
    assert (entry["state"], entry["result"], entry["code"]) == ("message", "lost", 451)
    assert (entry["to"], entry["mta"], entry["messages"]) == ("127.0.0.23", "mx.ok.test", 1)
    success, _ = await wait_for(broker, queues, "success", queue_id)
    assert [(r["state"], r["result"]) for r in success["results"]] == [
        ("message", "lost"),
        ("message", "accepted"),
    ]


async def test_connection_lost_at_rcpt_of_a_pipelined_transaction(
    world: Any, broker: Any, queues: dict[str, str]
) -> None:
    """MAIL, RCPT and DATA go in one write (RFC 2920); the sink answers MAIL and cuts the
    connection at RCPT: the attempt ended at rcptto, the connection lost."""
    plane, sink, _ip_id = world
    sink.script("RCPT", DROP)
    queue_id = await plane.asend(MESSAGE, recipients=["jane@ok.test"])
    retry, _ = await wait_for(broker, queues, "retry", queue_id)
    entry = last(retry)
    assert (entry["state"], entry["result"]) == ("rcptto", "lost")
    assert any("RCPT" in c.pipelined for c in sink.connections)  # it was pipelined


async def test_connection_refused(
    world: Any,
    broker: Any,
    queues: dict[str, str],
    http_receiver: HttpReceiver,
) -> None:
    plane, _sink, ip_id = world
    queue_id = await plane.asend(MESSAGE, recipients=["x@down.test"])
    result, _ = await wait_for(broker, queues, "retry", queue_id)
    entry = last(result)
    assert (entry["state"], entry["result"]) == ("connect", "error")
    assert (entry["to"], entry["mta"], entry["messages"]) == ("", "", 0)
    assert entry["code"] == 451 and "127.0.0.26" in entry["description"]
    # GreenArrow's view of the same attempt: no connection was made.
    (attempt, *_) = await eventually(
        lambda: http_events(http_receiver, queue_id), what="the HTTP event"
    )
    assert (attempt["status"], attempt["mx_hostname"], attempt["mx_ip"]) == (
        "deferral",
        None,
        None,
    )
    assert (attempt["outmtaid"], attempt["outmtaid_ip"]) == (ip_id, "127.0.0.2")
    assert attempt["outmtaid_hostname"] == "ip-1.vmta.test"


async def test_a_domain_that_does_not_exist_and_dns_that_fails(
    world: Any,
    broker: Any,
    queues: dict[str, str],
    dnsmasq: DnsmasqServer,
) -> None:
    plane, _sink, _ip_id = world
    missing = await plane.asend(MESSAGE, recipients=["x@nowhere.test"])  # NXDOMAIN
    failing = await plane.asend(MESSAGE, recipients=["x@elsewhere.example"])  # REFUSED
    result, _ = await wait_for(broker, queues, "failure", missing)
    entry = last(result)
    assert (entry["state"], entry["result"]) == ("dns", "error")
    assert (entry["code"], entry["status"]) == (550, "5.1.2")
    assert (entry["to"], entry["mta"]) == ("", "")
    retry, _ = await wait_for(broker, queues, "retry", failing)
    entry = last(retry)
    assert (entry["state"], entry["result"], entry["code"]) == ("dns", "error", 451)
    # dnsmasq was asked: the verdicts are its answers.
    assert any(name == "nowhere.test" for _type, name in dnsmasq.queries())


async def test_expiry(
    world: Any,
    broker: Any,
    queues: dict[str, str],
    http_receiver: HttpReceiver,
) -> None:
    plane, sink, _ip_id = world
    expired = "x-mq-maxdelivertime: 2000-01-01 00:00:00\r\n" + MESSAGE
    queue_id = await plane.asend(expired, recipients=["late@ok.test"])
    result, _ = await wait_for(broker, queues, "failure", queue_id)
    entry = last(result)
    assert (entry["state"], entry["result"]) == ("process", "error")
    assert (entry["code"], entry["status"]) == (550, "5.4.7")
    assert sink.messages == []
    seen = await eventually(
        lambda: (
            len(http_events(http_receiver, queue_id)) >= 2 and http_events(http_receiver, queue_id)
        ),
        what="the HTTP events",
    )
    by_type = {e["event_type"]: e for e in seen}
    assert by_type["delivery_attempt"]["status"] == "failure_toolong"
    bounce = by_type["bounce_all"]
    assert (bounce["bounce_type"], bounce["bounce_code"], bounce["synchronous"]) == (
        "s",
        20,
        True,
    )
