"""GET /api/events and GET /metrics on an app without a data plane (a node that only
serves the API): what the database knows, on SQLite and PostgreSQL."""

from __future__ import annotations

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from vmta.domain.attempts.spool_records import DELIVERED, NewMessage, Outcome
from vmta.domain.reports.delivery_event import DELIVERY_ATTEMPT, EventSubscription
from vmta.store.event_outbox import EventOutbox
from vmta.store.spool import SqlSpool
from vmta.store.store import Store

T0 = 1_700_000_000.0


def waiting_events(store: Store, n: int) -> None:
    """``n`` delivered recipients whose events the destination ``old-http`` never took."""
    spool = SqlSpool(
        store,
        "node",
        event_subscriptions=[EventSubscription("old-http", frozenset({DELIVERY_ATTEMPT}))],
    )
    jobs = spool.accept(
        [
            NewMessage(f"Q{i}", T0, T0 + 3600, "s@src.test", ["r@dest.test"], b"x\r\n")
            for i in range(n)
        ],
        T0 + 300,
    )
    spool.record(
        [
            Outcome(j.recipient_id, j.message_id, T0 + 1, DELIVERED, reply="250 ok",
                    outcome_label="delivered")
            for j in jobs
        ]
    )  # fmt: skip
    EventOutbox(store, "node").note_error("old-http", "POST http://x/: HTTP 503", T0 + 2)


def test_events_lists_destinations_with_a_backlog(client: TestClient, store: Store) -> None:
    waiting_events(store, 3)
    response = client.get("/api/events")
    assert response.status_code == 200
    body = response.json()
    assert body["recovered_in_flight"] == 0
    (only,) = body["destinations"]
    assert only["name"] == "old-http" and only["configured"] is False
    assert (only["backlog"], only["in_flight"]) == (3, 0)
    assert only["oldest_undelivered_at"] == T0 + 1
    assert only["oldest_undelivered_age"] > 0
    assert only["last_error"] == "POST http://x/: HTTP 503"


def test_events_and_metrics_need_credentials(anonymous: TestClient) -> None:
    for path in ("/api/events", "/metrics"):
        response = anonymous.get(path)
        assert response.status_code == 401
        assert "WWW-Authenticate" in response.headers


def test_metrics_report_the_queue_and_the_event_backlog(client: TestClient, store: Store) -> None:
    waiting_events(store, 2)
    response = client.get("/metrics")
    assert response.status_code == 200
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }
    assert values[("vmta_queue_recipients", (("state", "delivered"),))] == 2
    assert values[("vmta_queue_recipients", (("state", "ready"),))] == 0
    assert values[("vmta_event_backlog", (("destination", "old-http"),))] == 2
    assert values[("vmta_event_oldest_age_seconds", (("destination", "old-http"),))] > 0
