"""SIGHUP during a delivery run, as logrotate does it (rename, then signal): a real `vmta
serve` with a worker process keeps running, every attempt is in exactly one of the two
files with every line complete, the lines after the signal go to the new file, and the
log says the files were reopened. The per-message INFO lines (accepted, delivered) are
checked on the same run."""

from __future__ import annotations

import json
import re
import signal
import smtplib
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.serve_process import ServeFactory, relay_to, wait_until
from tests.peers.sink import RecordingSink

pytestmark = pytest.mark.one_database  # log files and signals; the spool is not in question

QUEUED_AS = re.compile(r"queued as (\S+)")
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
DEADLINE = 120.0  # seconds: a bound on a hang on a loaded machine, not a measurement


def send(port: int, tag: str, count: int) -> list[str]:
    """``count`` messages in one session; their queue ids from the replies to DATA."""
    ids = []
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.ehlo("client.test")
        for n in range(count):
            client.mail("sender@src.test")
            client.rcpt("rcpt@dest.test")
            code, reply = client.data(
                f"From: sender@src.test\r\nMessage-ID: <{tag}-{n}@src.test>\r\n"
                f"Subject: {tag} {n}\r\n\r\nbody\r\n".encode()
            )
            assert code == 250, reply
            match = QUEUED_AS.search(reply.decode())
            assert match is not None, reply
            ids.append(match.group(1))
    return ids


def records(path: Path) -> list[dict[str, Any]]:
    """Every line of a delivery log, each one complete JSON (a torn line fails here)."""
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n"), text[-200:]
    return [json.loads(line) for line in text.splitlines()]


def test_sighup_reopens_logs_during_a_delivery_run(
    serve: ServeFactory, sink: RecordingSink
) -> None:
    serve.configure(VMTA_WORKERS="2")
    server = serve.start()
    relay_to(server, sink.port)
    log_path = serve.data_dir / "delivery.log"
    rotated = serve.data_dir / "delivery.log.1"

    before = send(serve.smtp_port, "before", 20)
    wait_until(lambda: log_path.exists() and records(log_path), DEADLINE, "a first log line")
    # Mail in flight while the rotation happens: a second batch being sent.
    during: list[str] = []
    sender = threading.Thread(target=lambda: during.extend(send(serve.smtp_port, "during", 20)))
    sender.start()
    log_path.rename(rotated)  # logrotate's default: rename, then postrotate's signal
    assert server.proc is not None
    server.proc.send_signal(signal.SIGHUP)
    sender.join(timeout=DEADLINE)
    assert not sender.is_alive()
    # The parent and both processes of the data plane say they reopened.
    reopened = "SIGHUP: reopened"
    wait_until(lambda: server.log().count(reopened) >= 2, DEADLINE, "both processes reopen")
    assert f"SIGHUP: reopened {log_path}" in server.log()
    after = send(serve.smtp_port, "after", 20)
    every = before + during + after
    wait_until(lambda: len(sink.messages) >= len(every), DEADLINE, "every message delivered")

    def logged() -> list[dict[str, Any]]:
        return records(rotated) + (records(log_path) if log_path.exists() else [])

    wait_until(lambda: len(logged()) >= len(every), DEADLINE, "every attempt logged")
    # Nothing lost, nothing twice: one "delivered" line per message over both files.
    lines = logged()
    assert sorted(r["queue_id"] for r in lines) == sorted(every)
    assert {r["outcome"] for r in lines} == {"delivered"}
    assert all(ISO_UTC.fullmatch(r["time"]) for r in lines), lines[0]["time"]
    # Whatever was sent after every process reopened is in the new file.
    assert {r["queue_id"] for r in records(log_path)} >= set(after)
    # Still running, still serving.
    assert server.proc.poll() is None
    assert server.get("/api/health")["status"] == "ok"
    # One INFO line per accepted message and per final outcome (VMTA_LOG_MESSAGES=each).
    text = server.log()
    queue_id = after[-1]
    assert re.search(
        rf"accepted {queue_id}: client=127\.0\.0\.1 credential=- size=\d+"
        rf" message_id=<after-19@src\.test> recipients=1",
        text,
    ), text[-3000:]
    wait_until(
        lambda: f"delivered {queue_id}: recipient=rcpt@dest.test" in server.log(),
        DEADLINE,
        "the outcome's log line",
    )
    assert "Traceback" not in server.log()
