"""What comes back, with a real MTA: vmta relays a message from a bounce mailbox to a
private Postfix, which accepts it, fails to deliver it (550 5.1.1) and sends its
own DSN to the VERP address vmta used, through vmta's inbound listener. The result is a
``bounce_all`` with ``synchronous: false`` for the right recipient, posted to a real HTTP
receiver. (Exim cannot be installed next to Postfix on Debian, so Postfix is the MTA.)"""

from __future__ import annotations

import re
import smtplib
from collections.abc import Iterator

import pytest

from tests.e2e.serve_process import GA, ServeFactory, free_port, relay_to, wait_until
from tests.peers.http_receiver import HttpReceiver
from tests.peers.postfix import FailingPostfix

DEADLINE = 90.0  # bounds a hang; measures nothing


@pytest.fixture
def postfix() -> Iterator[tuple[FailingPostfix, int]]:
    inbound_port = free_port()
    instance = FailingPostfix(inbound_port)
    try:
        yield instance.start(), inbound_port
    finally:
        instance.stop()


def test_postfix_dsn_comes_back_as_bounce_all(
    serve: ServeFactory, http_receiver: HttpReceiver, postfix: tuple[FailingPostfix, int]
) -> None:
    mta, inbound_port = postfix
    serve.configure(
        VMTA_EVENTS_HTTP_URL=http_receiver.url,
        VMTA_INBOUND_LISTEN=f"127.0.0.1:{inbound_port}",
    )
    server = serve.start()
    relay_to(server, mta.port)
    api = server.api()
    created = api.post(
        f"{GA}/incoming_email_domains",
        json={"domain": {"domain": "bounces.test", "email_status": "normal"}},
    )
    domain_id = created.json()["data"]["domain"]["id"]
    box = api.post(
        f"{GA}/incoming_email_domains/{domain_id}/bounce_mailboxes",
        json={"mailbox": {"localpart": "return"}},
    )
    assert box.status_code == 200, box.text
    with smtplib.SMTP("127.0.0.1", serve.smtp_port, timeout=60) as client:
        client.sendmail(
            "return@bounces.test",
            ["alice@rcpt.test", "bob@rcpt.test"],
            b"From: news@example.com\r\nSubject: hello\r\nX-GreenArrow-ListID: list7\r\n"
            b"\r\nbody\r\n",
        )

    def bounces() -> list[dict[str, object]]:
        return [e for e in http_receiver.accepted_events() if e["event_type"] == "bounce_all"]

    wait_until(lambda: len(bounces()) == 2, DEADLINE, f"two bounces back\n{mta.log()}")
    by_email = {e["email"]: e for e in bounces()}
    assert set(by_email) == {"alice@rcpt.test", "bob@rcpt.test"}
    for event in by_email.values():
        assert event.get("synchronous") is False, event
        assert (event["bounce_type"], event["bounce_code"]) == ("h", 10)
        assert "mailbox unavailable" in str(event["bounce_text"])
        assert str(event["listid"]).lower() == "list7"
    # Postfix saw one transaction per recipient, each from its own VERP address.
    senders = set(re.findall(r"from=<(return-[a-z2-7]{36}@bounces\.test)>", mta.log()))
    assert len(senders) == 2
    attempts = [e for e in http_receiver.accepted_events() if e["event_type"] == "delivery_attempt"]
    assert {e["status"] for e in attempts} == {"success"}
    reports = server.get("/api/reports?matched=true")["reports"]
    assert len(reports) == 2 and all(r["report"]["source"] == "dsn" for r in reports)
