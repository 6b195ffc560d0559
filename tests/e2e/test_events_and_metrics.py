"""`vmta serve` with an HTTP event destination: /metrics parses with Prometheus' own text
parser and its counters move by exactly the number of messages sent; GET /api/events
reports the destination; both need credentials. SQLite and PostgreSQL."""

from __future__ import annotations

import smtplib

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
