"""Nothing accepted is ever lost: `kill -9` in the middle of a load, then `vmta serve`
again on the same data directory; every message whose DATA got ``250`` reaches the sink.

At-least-once delivery: a recipient may reach the sink twice only if its transaction was
in flight when the process died (its outcome was not stored). The test reads vmta's
in-flight journal as the kill left it and checks every duplicate against it, and checks
that vmta reports at least as many possible duplicates as there are.
"""

from __future__ import annotations

import json
import os
import re
import smtplib
import sqlite3
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.e2e.serve_process import (
    SOURCE_IP,
    ServeFactory,
    ServeProcess,
    eventually,
    relay_to,
    wait_until,
)
from tests.e2e.smtp_injector import Accepted, Injection
from tests.peers.sink import RecordingSink

# The SQLite run always injects 10,000 messages (the check). The PostgreSQL run
# injects fewer by default to keep the suite's time reasonable on 2 cores; set
# VMTA_TEST_PG_DURABILITY_MESSAGES=10000 for the full run there too.
SQLITE_MESSAGES = 10_000
PG_MESSAGES = int(os.environ.get("VMTA_TEST_PG_DURABILITY_MESSAGES", "3000"))
SESSIONS = 10
KILL_AT = 0.4  # kill -9 once this share of the messages has been accepted
INJECTION_DEADLINE = 300.0  # seconds: bounds on hangs on a loaded machine, not measurements
DELIVERY_DEADLINE = 240.0

MESSAGE_ID = re.compile(rb"^Message-ID: <([^>]+)>\r?$", re.MULTILINE | re.IGNORECASE)
RECEIVED_ID = re.compile(rb"by vmta\.test \(vmta\) with \S+ id (\S+);")
RECOVERED_LOG = re.compile(r"(\d+) recipient\(s\) were being delivered when vmta last stopped")
LOG_FIELDS = {"time", "queue_id", "recipient", "outcome", "source_ip", "remote_host", "reply"}


# ---- what the peers saw ----------------------------------------------------------------


def unfinished(journal: bytes) -> set[int]:
    """Recipient ids the journal shows as started and not done (its format: lines
    ``S id,id,...`` before a transaction, ``D id,id,...`` once its outcome is stored)."""
    started: set[int] = set()
    for line in journal.decode("ascii").splitlines():
        kind, _, ids = line.partition(" ")
        values = {int(x) for x in ids.split(",") if x.isdigit()}
        if kind == "S":
            started |= values
        elif kind == "D":
            started -= values
    return started


def sink_copies(sink: RecordingSink) -> tuple[Counter[tuple[str, str]], dict[str, set[str]]]:
    """How many copies of each (Message-ID, recipient) the sink accepted, and the queue
    ids named in the Received field vmta added to each Message-ID's copies."""
    copies: Counter[tuple[str, str]] = Counter()
    queue_ids: dict[str, set[str]] = {}
    for seen in sink.messages:
        mid_match = MESSAGE_ID.search(seen.data)
        assert mid_match is not None, seen.data[:300]
        mid = mid_match.group(1).decode()
        for rcpt in seen.rcpt_tos:
            copies[(mid, rcpt)] += 1
        received = RECEIVED_ID.search(seen.data)
        assert received is not None, seen.data[:300]
        queue_ids.setdefault(mid, set()).add(received.group(1).decode())
    return copies, queue_ids


def missing_at_sink(sink: RecordingSink, accepted: list[Accepted]) -> list[tuple[str, str]]:
    copies, _ = sink_copies(sink)
    return [
        (a.message_id, r) for a in accepted for r in a.recipients if not copies[(a.message_id, r)]
    ]


def delivery_log(data_dir: Path) -> list[dict[str, Any]]:
    lines = (data_dir / "delivery.log").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    for record in records:
        assert set(record) >= LOG_FIELDS, record
    return records


def recipient_id(server: ServeProcess, queue_id: str, address: str) -> int:
    message = server.get(f"/api/messages/{queue_id}")["message"]
    (rid,) = [r["id"] for r in message["recipients"] if r["address"] == address]
    return int(rid)


# ---- the test ----------------------------------------------------------------------------


@pytest.mark.slow(32)
def test_kill_9_loses_no_accepted_message(
    serve: ServeFactory,
    sink: RecordingSink,
    database_url: str | None,
) -> None:
    total = SQLITE_MESSAGES if database_url is None else PG_MESSAGES
    serve.configure(VMTA_RETRY_BACKOFF="1")  # a deferral, should one happen, retries soon
    first = serve.start()
    relay_to(first, sink.port)
    injection = Injection(
        "127.0.0.1",
        serve.smtp_port,
        total,
        sessions=SESSIONS,
        deadline=INJECTION_DEADLINE,
        token=uuid.uuid4().hex[:8],
    ).start()

    # Kill while both injection and delivery run.
    wait_until(
        lambda: injection.accepted_count() >= total * KILL_AT or bool(injection.errors),
        INJECTION_DEADLINE,
        f"{KILL_AT:.0%} of {total} messages to be accepted",
    )
    first.kill9()
    accepted_at_kill = injection.accepted_count()
    delivered_at_kill = len(sink.messages)
    # As the kill left it: the restart starts a new journal.
    journal = (serve.data_dir / "inflight.journal").read_bytes()
    in_flight = unfinished(journal)
    assert not injection.errors, injection.errors
    assert delivered_at_kill > 0, "delivery had not started at the kill"
    assert accepted_at_kill < total, "the injection had ended at the kill"

    second = serve.start()
    wait_until(injection.finished.is_set, INJECTION_DEADLINE, "the injection to end")
    injection.join(10)
    assert not injection.errors, injection.errors
    accepted = injection.snapshot()
    assert len(accepted) == total  # every message was accepted once, before or after
    assert injection.connection_failures > 0  # the kill was seen by the clients

    # The check of the issue: everything that got 250 arrives.
    missing: list[tuple[str, str]] = []

    def all_arrived() -> bool:
        missing[:] = missing_at_sink(sink, accepted)
        return not missing

    assert eventually(all_arrived, DELIVERY_DEADLINE, step=0.25), (
        f"{len(missing)} accepted recipient(s) never reached the sink, e.g. {missing[:5]}"
    )

    # Messages committed whose 250 the kill swallowed are delivered too: wait until the
    # spool has nothing left to do before comparing counts and logs.
    wait_until(
        lambda: second.get("/api/queue")["recipients"]["queued"] == 0,
        DELIVERY_DEADLINE,
        "the spool to have no queued recipient",
        step=0.25,
    )
    queue = second.get("/api/queue")
    assert queue["recipients"]["failed"] == 0
    recovered = queue["engine"]["recovered_in_flight"]

    # vmta reports exactly what its journal held, in the log as in the API.
    assert recovered == len(in_flight)
    reported = RECOVERED_LOG.search(second.log())
    assert (int(reported.group(1)) if reported else 0) == recovered

    copies, queue_ids = sink_copies(sink)
    by_mid = {a.message_id: a for a in accepted}
    # The sink's copies name the queue id the 250 reply gave.
    for mid, a in by_mid.items():
        assert queue_ids[mid] == {a.queue_id}, (mid, queue_ids[mid], a.queue_id)

    # Duplicates: only recipients in flight at the kill, no more than vmta reports.
    duplicates = {key: n - 1 for key, n in copies.items() if n > 1}
    print(
        f"kill -9 after {accepted_at_kill} accepted and {delivered_at_kill} delivered;"
        f" {len(in_flight)} recipient(s) in flight, {sum(duplicates.values())} duplicate(s);"
        f" {len(injection.unanswered)} attempt(s) without a reply, sent again"
    )
    assert sum(duplicates.values()) <= recovered
    log_records = delivery_log(serve.data_dir)
    delivered_lines = Counter(
        (r["queue_id"], r["recipient"]) for r in log_records if r["outcome"] == "delivered"
    )
    all_lines = Counter((r["queue_id"], r["recipient"]) for r in log_records)
    for mid, rcpt in duplicates:
        (queue_id,) = queue_ids[mid]
        assert recipient_id(second, queue_id, rcpt) in in_flight, (mid, rcpt)

    # The delivery log: one line per attempt. A recipient delivered once and not in flight
    # at the kill has exactly one line; one in flight may have lost its line with the
    # process (its outcome was not stored, or was stored just before the kill).
    for a in accepted:
        for rcpt in a.recipients:
            key = (a.queue_id, rcpt)
            if copies[(a.message_id, rcpt)] == 1 and delivered_lines[key] == 1:
                continue
            assert recipient_id(second, a.queue_id, rcpt) in in_flight, key
            assert delivered_lines[key] <= copies[(a.message_id, rcpt)], key
    for record in log_records:
        if record["outcome"] == "delivered":
            assert record["source_ip"] == SOURCE_IP, record
            assert record["remote_host"] == "127.0.0.1", record
            assert record["reply"].startswith("250"), record
            assert record["virtual_mta"] == "sink", record
    assert {c.peer_ip for c in sink.connections} == {SOURCE_IP}

    # The spool's own account of a sample agrees with the log and the sink.
    for a in accepted[:: max(1, total // 25)]:
        message = second.get(f"/api/messages/{a.queue_id}")["message"]
        assert message["mail_from"] == "load@injector.test"
        assert tuple(r["address"] for r in message["recipients"]) == a.recipients
        assert {r["state"] for r in message["recipients"]} == {"delivered"}
        for r in message["recipients"]:
            attempts = [x for x in message["attempts"] if x["recipient_id"] == r["id"]]
            assert len(attempts) == all_lines[(a.queue_id, r["address"])] or r["id"] in in_flight
            assert attempts[-1]["outcome"] == "delivered"
            assert attempts[-1]["source_ip"] == SOURCE_IP


# ---- 250 only after commit ----------------------------------------------------------------

REFUSE_SQLITE = """
CREATE TRIGGER refuse_messages BEFORE INSERT ON messages
BEGIN SELECT RAISE(ABORT, 'simulated storage failure'); END
"""
# PostgreSQL: a deferred constraint trigger fails the COMMIT itself, after every insert
# of the transaction has succeeded: the reply must still not be 250.
REFUSE_PG = [
    """CREATE FUNCTION refuse_commit() RETURNS trigger LANGUAGE plpgsql AS
       $$ BEGIN RAISE EXCEPTION 'simulated commit failure'; END $$""",
    """CREATE CONSTRAINT TRIGGER refuse_messages AFTER INSERT ON messages
       DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_commit()""",
]


def break_storage(serve: ServeFactory, url: str | None, broken: bool) -> None:
    """Make every insert of a message fail in the real database vmta uses, or repair it."""
    if url is None:
        with sqlite3.connect(serve.data_dir / "vmta.db") as db:
            db.execute(REFUSE_SQLITE if broken else "DROP TRIGGER refuse_messages")
        return
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            if broken:
                for statement in REFUSE_PG:
                    conn.execute(text(statement))
            else:
                conn.execute(text("DROP TRIGGER refuse_messages ON messages"))
    finally:
        engine.dispose()


def send(port: int, subject: str) -> tuple[int, str]:
    """One message; the reply to its DATA."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.test")
        client.mail("sender@client.test")
        client.rcpt("rcpt@sink.test")
        code, reply = client.data(f"Subject: {subject}\r\n\r\nbody\r\n".encode())
        return code, reply.decode()


def test_no_250_when_the_message_cannot_be_committed(
    serve: ServeFactory,
    sink: RecordingSink,
    database_url: str | None,
) -> None:
    server = serve.start()
    relay_to(server, sink.port)
    break_storage(serve, database_url, broken=True)

    code, reply = send(serve.smtp_port, "never stored")

    assert (code, reply) == (451, "4.3.0 Could not store the message; try again later")
    assert server.get("/api/messages")["messages"] == []
    assert server.get("/api/queue")["recipients"] == {"queued": 0, "delivered": 0, "failed": 0}
    assert "simulated" not in reply  # the database's words stay in the log
    assert "simulated" in server.log()

    # Repaired, the same server accepts again; only that message ever reaches the sink.
    break_storage(serve, database_url, broken=False)
    code, reply = send(serve.smtp_port, "stored")
    assert code == 250
    queue_id = reply.rsplit(" ", 1)[-1]
    wait_until(lambda: len(sink.messages) >= 1, 60, "the stored message at the sink")
    assert [m["id"] for m in server.get("/api/messages")["messages"]] == [queue_id]
    assert [b"Subject: stored" in m.data for m in sink.messages] == [True]
