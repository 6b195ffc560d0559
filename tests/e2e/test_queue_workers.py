"""`GET /api/queue` with worker processes (VMTA_WORKERS=2): the engine part adds up every
process, not only the one serving the API. Messages are held at the sink's DATA so
that all of them sit in the memory of whichever process accepted them."""

from __future__ import annotations

import smtplib
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.e2e.serve_process import ServeFactory, relay_to, wait_until
from tests.peers.sink import RecordingSink

pytestmark = pytest.mark.one_database

MESSAGES = 8
DEADLINE = 90.0  # seconds: bounds a hang on a loaded machine


def send_one(port: int, n: int) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.sendmail("s@src.test", [f"r{n}@dest.test"], b"Subject: x\r\n\r\nbody\r\n")


def test_queue_sums_every_worker_process(serve: ServeFactory, sink: RecordingSink) -> None:
    serve.configure(VMTA_WORKERS="2")
    server = serve.start()
    relay_to(server, sink.port)
    ready = "accepting and delivering"
    wait_until(lambda: ready in server.log(), DEADLINE, "the worker to accept connections")
    gate = threading.Event()
    sink.data_gate = gate  # every DATA waits: the messages stay in memory meanwhile
    try:
        with ThreadPoolExecutor(MESSAGES) as pool:
            list(pool.map(lambda n: send_one(serve.smtp_port, n), range(MESSAGES)))

        def summed() -> bool:
            engine = server.get("/api/queue")["engine"]
            return bool(engine["processes"] == 2 and engine["in_memory"] == MESSAGES)

        wait_until(summed, DEADLINE, "both processes counted, every message in memory")
        engine = server.get("/api/queue")["engine"]
        assert len(set(engine["nodes"])) == 2
    finally:
        gate.set()
    wait_until(lambda: len(sink.messages) == MESSAGES, DEADLINE, "every message delivered")
    wait_until(
        lambda: server.get("/api/queue")["engine"]["in_memory"] == 0, DEADLINE, "memory emptied"
    )
