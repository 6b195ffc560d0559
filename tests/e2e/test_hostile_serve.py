"""`vmta serve` as a real process: SIGTERM ends SMTP sessions the RFC 5321 §3.8 way, and
the data directory is private to vmta's user. SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
from pathlib import Path

import pytest

from tests.e2e.serve_process import STOP_DEADLINE, ServeFactory
from tests.peers.raw_smtp import RawSmtp


def open_session(port: int) -> RawSmtp:
    client = RawSmtp(port)
    assert client.read().code == 220
    assert client.command("EHLO client.test").code == 250
    return client


def test_sigterm_finishes_data_in_progress_then_says_421(serve: ServeFactory) -> None:
    serve.configure(VMTA_SMTP_SHUTDOWN_GRACE="60")
    server = serve.start()
    assert server.proc is not None
    with open_session(serve.smtp_port) as idle, open_session(serve.smtp_port) as sending:
        assert sending.command("MAIL FROM:<s@src.test>").code == 250
        assert sending.command("RCPT TO:<r@dest.test>").code == 250
        assert sending.command("DATA").code == 354
        sending.send(b"Subject: half-way\r\n\r\nfirst part\r\n")

        server.proc.send_signal(signal.SIGTERM)
        # The idle session is told, and closed (bounded by the client's read timeout).
        goodbye = idle.read()
        assert (goodbye.code, goodbye.text.split()[0]) == (421, "4.3.2"), goodbye
        assert idle.closed_by_server()
        # No new connection is taken meanwhile.
        with pytest.raises(OSError):
            RawSmtp(serve.smtp_port).read()

        # The transaction in DATA finishes: its message is stored and promised.
        sending.send(b"second part\r\n.\r\n")
        done = sending.read()
        assert done.code == 250 and "queued as" in done.text, done
        after = sending.read()
        assert (after.code, after.text.split()[0]) == (421, "4.3.2"), after

    try:
        assert server.proc.wait(timeout=STOP_DEADLINE) == 0
    except subprocess.TimeoutExpired:
        pytest.fail("vmta serve did not stop after its sessions ended")
    queue_id = done.text.rsplit(" ", 1)[-1]
    # The promised message is in the spool after a restart (get() asserts the 200).
    again = serve.start()
    assert queue_id in str(again.get(f"/api/messages/{queue_id}"))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_data_directory_is_private(serve: ServeFactory) -> None:
    # An older version left a readable directory and log behind: tightened at start.
    serve.data_dir.mkdir(mode=0o755)
    os.chmod(serve.data_dir, 0o755)
    old_log = serve.data_dir / "delivery.log"
    old_log.write_text("")
    os.chmod(old_log, 0o644)

    server = serve.start()
    with open_session(serve.smtp_port) as client:  # writes the spool (and the WAL)
        assert client.command("MAIL FROM:<s@src.test>").code == 250
        assert client.command("RCPT TO:<r@dest.test>").code == 250
        assert client.command("DATA").code == 354
        assert client.command(b"Subject: x\r\n\r\nbody\r\n.").code == 250

    assert mode(serve.data_dir) == 0o700
    files = [p for p in serve.data_dir.iterdir() if p.is_file()]
    names = {p.name for p in files}
    assert {"delivery.log", "data-dir-id", "inflight.journal", "pacing.memory"} <= names, names
    loose = {p.name: oct(mode(p)) for p in files if mode(p) & 0o077}
    assert loose == {}, loose
    assert server.stop() == 0
    loose = {p.name: oct(mode(p)) for p in serve.data_dir.iterdir() if mode(p) & 0o077}
    assert loose == {}, loose
