"""`vmta serve` with an HTTP event destination: /metrics parses with Prometheus' own text
parser and its counters move by exactly the number of messages sent; GET /api/events
reports the destination; both need credentials. SQLite and PostgreSQL."""

from __future__ import annotations

import smtplib
from collections import Counter

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.serve_process import SOURCE_IP, ServeFactory, ServeProcess, relay_to, wait_until
from tests.peers.http_receiver import HttpReceiver
from tests.peers.sink import RecordingSink

SENT = 5
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def send(port: int, n: int) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        for i in range(n):
            refused = client.sendmail(
                "sender@client.test", [f"rcpt{i}@sink.test"], f"Subject: {i}\r\n\r\nbody\r\n"
            )
            assert refused == {}


def samples(server: ServeProcess) -> Samples:
    response = server.api().get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_and_events_of_a_run(
    serve: ServeFactory, sink: RecordingSink, http_receiver: HttpReceiver
) -> None:
    serve.configure(VMTA_EVENTS_HTTP_URL=http_receiver.url, VMTA_EVENTS_HTTP_BATCH="10")
    server = serve.start()
    relay_to(server, sink.port)
    anonymous = httpx.get(f"http://{server.api_address}/metrics")
    assert anonymous.status_code == 401
    assert httpx.get(f"http://{server.api_address}/api/events").status_code == 401
    before = samples(server)

    send(serve.smtp_port, SENT)
    wait_until(lambda: len(sink.messages) == SENT, 60, "every message delivered")
    wait_until(
        lambda: server.get("/api/queue")["recipients"]["delivered"] == SENT, 60, "outcomes stored"
    )
    wait_until(lambda: len(http_receiver.accepted_events()) == SENT, 60, "every event")
    # The receiver has them before vmta stores the acknowledgement: wait for that too.
    wait_until(
        lambda: server.get("/api/events")["destinations"][0]["backlog"] == 0,
        60,
        "every acknowledgement stored",
    )

    after = samples(server)
    moved = {
        "accepted": ("vmta_messages_accepted_total", {"source": "smtp"}),
        "delivered": (
            "vmta_messages_delivered_total",
            {"virtual_mta": "sink", "path": SOURCE_IP},
        ),
    }
    for name, labels in moved.values():
        assert value(after, name, **labels) - value(before, name, **labels) == SENT, name
    assert value(after, "vmta_injection_latency_seconds_count") == SENT
    assert value(after, "vmta_queue_recipients", state="delivered") == SENT
    assert value(after, "vmta_queue_recipients", state="ready") == 0
    assert value(after, "vmta_messages_failed_total", virtual_mta="sink", path=SOURCE_IP) == 0
    assert value(after, "vmta_spool_commit_seconds_count") >= 2  # accepts and outcomes
    assert value(after, "vmta_event_backlog", destination="http") == 0

    report = server.get("/api/events")
    (http,) = report["destinations"]
    assert http["name"] == "http" and http["type"] == "http" and http["configured"] is True
    assert http["target"] == http_receiver.url
    assert (http["backlog"], http["in_flight"], http["oldest_undelivered_age"]) == (0, 0, None)
    assert http["last_error"] is None and http["sent_by_this_node"] == SENT
    assert report["recovered_in_flight"] == 0
    assert {e["status"] for e in http_receiver.accepted_events()} == {"success"}


def test_metrics_count_deferrals_failures_and_bounces(
    serve: ServeFactory, sink: RecordingSink, http_receiver: HttpReceiver
) -> None:
    """Five messages: one deferred once (then delivered), one refused for good (failed,
    and its sender gets a delivery status notification, which the sink receives too).
    Each counter moves by exactly that, and the events say the same."""
    serve.configure(
        VMTA_EVENTS_HTTP_URL=http_receiver.url,
        VMTA_EVENTS_HTTP_BATCH="10",
        VMTA_RETRY_BACKOFF="1",  # the deferred one is tried again soon
    )
    server = serve.start()
    relay_to(server, sink.port)
    before = samples(server)
    sink.script("RCPT", "451 4.7.1 Greylisted")  # the first recipient, once
    sink.refuse(f"rcpt{SENT - 1}@sink.test", "550 5.1.1 No such user")

    send(serve.smtp_port, SENT)
    # SENT - 1 delivered, and the notification to the sender of the refused one.
    wait_until(lambda: len(sink.messages) == SENT, 90, "deliveries and the notification")

    def tally() -> Counter[str]:
        return Counter(
            e["status"] if e["event_type"] == "delivery_attempt" else e["event_type"]
            for e in http_receiver.accepted_events()
        )

    # The refused recipient's first hard bounce also makes it a bad address (once).
    wanted = Counter(
        {"success": SENT, "deferral": 1, "failure": 1, "bounce_all": 1, "bounce_bad_address": 1}
    )
    wait_until(lambda: tally() == wanted, 60, f"the events {dict(wanted)}")
    after = samples(server)
    route = {"virtual_mta": "sink", "path": SOURCE_IP}
    moved = {
        "vmta_messages_delivered_total": SENT,  # SENT - 1 messages and the notification
        "vmta_messages_deferred_total": 1,
        "vmta_messages_failed_total": 1,
        "vmta_messages_bounced_total": 1,
    }
    for name, n in moved.items():
        assert value(after, name, **route) - value(before, name, **route) == n, name
    assert value(after, "vmta_messages_accepted_total", source="smtp") == SENT
    assert value(after, "vmta_queue_recipients", state="failed") == 1
