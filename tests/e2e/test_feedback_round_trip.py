"""What comes back, with a real MTA: vmta relays a message from a bounce mailbox to a
private Postfix, which accepts it, fails to deliver it (550 5.1.1) and sends its
own DSN to the VERP address vmta used, through vmta's inbound listener. The result is a
``bounce_all`` with ``synchronous: false`` for the right recipient, posted to a real HTTP
receiver. (Exim cannot be installed next to Postfix on Debian, so Postfix is the MTA.)"""

from __future__ import annotations

import re
import smtplib
import threading
from collections.abc import Iterator

import pytest

from tests.e2e.serve_process import GA, ServeFactory, ServeProcess, relay_to, wait_until
from tests.free_ports import free_port
from tests.peers.http_receiver import HttpReceiver
from tests.peers.postfix import FailingPostfix
from tests.peers.sink import RecordingSink

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
    # A hard bounce is a bad address at once (VMTA_BAD_ADDRESS_HARD=1): one event each.
    bad = [e for e in http_receiver.accepted_events() if e["event_type"] == "bounce_bad_address"]
    assert sorted(e["email"] for e in bad) == ["alice@rcpt.test", "bob@rcpt.test"]
    reports = server.get("/api/reports?matched=true")["reports"]
    assert len(reports) == 2 and all(r["report"]["source"] == "dsn" for r in reports)


def incoming_domain(server: ServeProcess, **mailboxes: dict[str, object]) -> None:
    """bounces.test with the mailboxes given by sub-resource name."""
    api = server.api()
    created = api.post(
        f"{GA}/incoming_email_domains",
        json={"domain": {"domain": "bounces.test", "email_status": "normal"}},
    )
    assert created.status_code == 200, created.text
    domain_id = created.json()["data"]["domain"]["id"]
    for path, body in mailboxes.items():
        made = api.post(f"{GA}/incoming_email_domains/{domain_id}/{path}", json={"mailbox": body})
        assert made.status_code == 200, made.text


def test_forwarding_and_refusals(serve: ServeFactory, sink: RecordingSink) -> None:
    inbound_port = free_port()
    serve.configure(VMTA_INBOUND_LISTEN=f"127.0.0.1:{inbound_port}")
    server = serve.start()
    relay_to(server, sink.port)
    incoming_domain(
        server,
        forwarding_mailboxes={"localpart": "postmaster", "forward_to": ["ops@else.test"]},
    )
    with smtplib.SMTP("127.0.0.1", inbound_port, timeout=60) as client:
        client.ehlo("peer.test")
        assert not client.has_extn("auth")
        client.mail("someone@outside.test")
        for address in ("victim@elsewhere.test", "nobody@bounces.test"):
            code, text = client.rcpt(address)
            assert (code, text[:5]) == (550, b"5.7.1"), address
        client.rset()
        client.sendmail(
            "someone@outside.test",
            ["postmaster@bounces.test"],
            b"From: someone@outside.test\r\nSubject: for the postmaster\r\n\r\nhi\r\n",
        )
    wait_until(lambda: len(sink.messages) == 1, DEADLINE, "the forwarded copy")
    [copy] = sink.messages
    assert copy.rcpt_tos == ["ops@else.test"]
    assert b"Subject: for the postmaster" in copy.data


def test_kill9_during_inbound_acceptance_loses_nothing_acknowledged(serve: ServeFactory) -> None:
    """Every bounce answered 250 before a kill -9 is reported after the restart."""
    inbound_port = free_port()
    serve.configure(VMTA_INBOUND_LISTEN=f"127.0.0.1:{inbound_port}")
    server = serve.start()
    incoming_domain(server, bounce_mailboxes={"localpart": "return"})
    acknowledged: list[int] = []
    stop = threading.Event()

    def send() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            dsn = DSN.replace(b"NUMBER", str(n).encode())
            try:
                with smtplib.SMTP("127.0.0.1", inbound_port, timeout=10) as client:
                    client.sendmail("", ["return@bounces.test"], dsn)
                acknowledged.append(n)
            except (OSError, smtplib.SMTPException):
                return  # the server is gone: this one was not acknowledged

    sender = threading.Thread(target=send)
    sender.start()
    wait_until(lambda: len(acknowledged) >= 20, DEADLINE, "bounces accepted before the kill")
    server.kill9()
    stop.set()
    sender.join(timeout=30)
    restarted = serve.start()
    wanted = {f"user{n}@dest.test" for n in acknowledged}

    def reported() -> set[str]:
        rows = restarted.get("/api/reports?matched=false&limit=10000")["reports"]
        return {r["recipient"] for r in rows}

    wait_until(
        lambda: wanted <= reported(),
        DEADLINE,
        f"every acknowledged bounce reported; missing {sorted(wanted - reported())[:5]}"
        f" of {len(wanted)}\n{restarted.log()[-3000:]}",
    )


DSN = (
    b"From: MAILER-DAEMON@mx.dest.test\r\nTo: return@bounces.test\r\n"
    b"Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
    b"--b\r\nContent-Type: text/plain\r\n\r\nIt failed.\r\n"
    b"--b\r\nContent-Type: message/delivery-status\r\n\r\n"
    b"Reporting-MTA: dns; mx.dest.test\r\n\r\n"
    b"Final-Recipient: rfc822; userNUMBER@dest.test\r\nAction: failed\r\nStatus: 5.1.1\r\n"
    b"Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n\r\n"
    b"--b--\r\n"
)
