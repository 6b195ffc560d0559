"""An API-only process (``ApiPorts(data_plane=None)``, api/ports.py): what needs a data
plane answers as documented, and nothing else changes."""

from __future__ import annotations

from fastapi.testclient import TestClient

MQ_MESSAGE = {
    "envelope": "s@example.com",
    "recipient": "r@example.com",
    "mime": "Subject: x\r\n\r\nx",
}
SUBMISSION = {
    "message": {
        "text": "x",
        "subject": "x",
        "to": [{"email": "r@example.com"}],
        "from_email": "s@example.com",
    }
}


def test_http_submission_says_this_process_does_not_accept_mail(client: TestClient) -> None:
    response = client.post("/api/v1/send.json", json=SUBMISSION)
    assert response.status_code == 503
    assert response.json() == {"success": 0, "error": "this vmta process does not accept mail"}


def test_injection_says_no_delivery_is_running(client: TestClient) -> None:
    response = client.post("/v1/inject", json=MQ_MESSAGE)
    assert response.status_code == 400
    assert "Injection is not available: no delivery is running." in response.text


def test_health_queue_and_events_show_no_data_plane(client: TestClient) -> None:
    assert client.get("/api/health").json() == {"status": "ok", "dependencies": {}}
    assert client.get("/api/queue").json()["engine"] == {"running": False}
    assert client.get("/api/events").json() == {"destinations": [], "recovered_in_flight": 0}
