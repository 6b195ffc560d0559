"""Bulk actions against a spool in use: a real `vmta serve` keeps retrying recipients a
sink defers (every second) while the operator deletes one domain's and holds
another's through the API. Counts are exact; no message is both deleted and delivered;
a held recipient is not sent until released, then it is."""

from __future__ import annotations

import re
import smtplib
import time
from typing import Any

import pytest

from tests.e2e.serve_process import ServeFactory, relay_to, wait_until
from tests.peers.sink import RecordingSink

pytestmark = pytest.mark.one_database  # the store rules are tested on both in tests/api

QUEUED_AS = re.compile(r"queued as (\S+)")
MESSAGE_ID = re.compile(rb"Message-ID: <([^>]+)>")
DEADLINE = 120.0  # seconds: bounds a hang on a loaded machine, measures nothing
LATER, HELD = 20, 10


def inject(port: int, domain: str, count: int) -> dict[str, str]:
    """``count`` one-recipient messages to ``domain``: Message-ID -> queue id."""
    ids = {}
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.ehlo("client.test")
        for n in range(count):
            mid = f"{domain}-{n}@src.test"
            client.mail("sender@src.test")
            client.rcpt(f"r{n}@{domain}")
            code, reply = client.data(
                f"From: sender@src.test\r\nMessage-ID: <{mid}>\r\n\r\nbody\r\n".encode()
            )
            assert code == 250, reply
            match = QUEUED_AS.search(reply.decode())
            assert match is not None
            ids[mid] = match.group(1)
    return ids


def delivered(sink: RecordingSink) -> set[str]:
    found = set()
    for seen in sink.messages:
        match = MESSAGE_ID.search(seen.data)
        assert match is not None
        found.add(match.group(1).decode())
    return found


def post(server: Any, action: str, query: str) -> dict[str, int]:
    response = server.api().post(f"/api/queue/{action}?{query}")
    assert response.status_code == 200, response.text
    body: dict[str, int] = response.json()
    return body


def until_all_changed(server: Any, action: str, query: str, total: int) -> int:
    """Repeat the action while recipients it selects are in flight (claimed for their
    next attempt); the sum of what it changed."""
    changed = 0
    deadline = time.monotonic() + DEADLINE
    while changed < total and time.monotonic() < deadline:
        answer = post(server, action, query)
        changed += answer["changed"]
        if answer["in_flight"] == 0 and answer["changed"] == 0:
            break  # nothing left that it selects
        time.sleep(0.05)
    return changed


def test_bulk_actions_on_a_spool_in_use(serve: ServeFactory, sink: RecordingSink) -> None:
    serve.configure(VMTA_RETRY_BACKOFF="1")  # deferred recipients come back every second
    server = serve.start()
    relay_to(server, sink.port)
    for n in range(LATER):
        sink.refuse(f"r{n}@later.test", "451 4.3.0 try later")
    for n in range(HELD):
        sink.refuse(f"r{n}@held.test", "451 4.3.0 try later")
    later = inject(serve.smtp_port, "later.test", LATER)
    held = inject(serve.smtp_port, "held.test", HELD)

    def tried() -> bool:
        queue = server.get("/api/queue")
        return bool(queue["queued"]["deferred"] >= LATER + HELD)

    wait_until(tried, DEADLINE, "every recipient deferred once")

    # Hold one domain while vmta keeps retrying: every one of them, exactly once.
    assert until_all_changed(server, "hold", "domain=held.test", HELD) == HELD
    # Delete the other while it is retried, and let the sink start accepting meanwhile:
    # each recipient is then either deleted or delivered, whichever came first.
    first = post(server, "delete", "domain=later.test")
    sink.accept_all()
    deleted = first["changed"] + until_all_changed(
        server, "delete", "domain=later.test&state=queued", LATER
    )

    def settled() -> bool:
        rows = server.get("/api/messages?state=queued&limit=1000")["messages"]
        return {row["id"] for row in rows} <= set(held.values())

    wait_until(settled, DEADLINE, "later.test all deleted or delivered")
    got = delivered(sink)
    gone = {
        mid
        for mid, qid in later.items()
        if server.api().get(f"/api/messages/{qid}").status_code == 404
    }
    assert gone.isdisjoint(got)  # never both deleted and delivered
    assert len(gone) == deleted  # the counts answered are exact
    assert gone | (got & set(later)) == set(later)  # and nothing is lost
    # Held: still queued, held, none sent, although the sink now accepts everything.
    for qid in held.values():
        (recipient,) = server.get(f"/api/messages/{qid}")["message"]["recipients"]
        assert (recipient["state"], recipient["waiting_reason"]) == (
            "queued",
            "held by an operator",
        )
    assert got.isdisjoint(held)

    released = post(server, "release", "domain=held.test")
    assert (released["changed"], released["in_flight"]) == (HELD, 0)
    wait_until(lambda: set(held) <= delivered(sink), DEADLINE, "released ones delivered")
    assert server.proc is not None and server.proc.poll() is None
