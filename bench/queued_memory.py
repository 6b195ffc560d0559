"""Memory with a large backlog: peak RSS of `vmta serve` while N messages wait behind a
throttled path, and the inflow bound holding while injection goes on.

    .venv/bin/python bench/queued_memory.py [--messages 100000] [--size 10240]
        [--sessions 50] [--extra 5000]

Method, printed with the figures:

1. `vmta serve` on a fresh data directory (SQLite, accepted after fsync), its default
   VirtualMTA a relay server to a discarding smtp-sink with max_messages_per_hour 1: one
   message goes, every other one waits (a paused path in all but name), and
   VMTA_MAX_QUEUED = N.
2. Phase 1: smtp-source injects N messages of SIZE bytes over S sessions. The RSS of the
   vmta process tree is sampled every 0.25 s from the start until 10 s after the last
   accept; the peak is reported (and PSS).
3. Phase 2: EXTRA more messages through our own SMTP sessions while the queue is at its
   bound: each gets 250 or a 4xx. Afterwards the API's queue counts must hold exactly the
   messages that got 250 (none lost), and the RSS peak is sampled throughout.
4. The same backlog in a private Postfix (its own queue directory, every message held
   with `defer_transports = smtp`) is the peer: its process tree's peak RSS in the same run.
Every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import json
import smtplib
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from process_tree import ProcessTree
from relay_peers import FROM, TO, TOKEN, Postfix, Sink, Vmta, free_port

SMTP_SOURCE = "/usr/sbin/smtp-source"
SAMPLE = 0.25


class Peak(threading.Thread):
    """Samples a process tree's memory until stopped; keeps the peak."""

    def __init__(self, tree: ProcessTree) -> None:
        super().__init__(daemon=True)
        self.tree = tree
        self.rss = self.pss = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            rss, pss = self.tree.memory()
            self.rss, self.pss = max(self.rss, rss), max(self.pss, pss)
            self.stop.wait(SAMPLE)


def inject(port: int, messages: int, size: int, sessions: int) -> float:
    started = time.perf_counter()
    command = [SMTP_SOURCE, "-s", str(sessions), "-m", str(messages), "-l", str(size)]
    command += ["-d", "-M", "bench.test", "-f", FROM, "-t", TO, f"127.0.0.1:{port}"]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, timeout=3600)
    return time.perf_counter() - started


def inject_counted(port: int, messages: int, size: int, sessions: int) -> tuple[int, int]:
    """(accepted, refused): each message in its own transaction; 4xx counts as refused."""
    body = b"Subject: more\r\n\r\n" + (b"x" * 76 + b"\r\n") * (size // 78)
    counts = {"ok": 0, "refused": 0}
    lock = threading.Lock()
    per_session = messages // sessions

    def session() -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
            client.ehlo("bench.test")
            for _ in range(per_session):
                code, _ = client.mail(FROM)
                if code == 250:
                    client.rcpt(TO)
                    code, _ = client.data(body)
                else:
                    client.rset()
                with lock:
                    counts["ok" if code == 250 else "refused"] += 1

    threads = [threading.Thread(target=session) for _ in range(sessions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=1800)
    return counts["ok"], counts["refused"]


def api(vmta: Vmta, method: str, path: str, body: object | None = None) -> dict[str, object]:
    request = urllib.request.Request(
        vmta.api + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answer: dict[str, object] = json.loads(response.read())
        return answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=10_240)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--extra", type=int, default=5_000)
    parser.add_argument("--systems", default="vmta,postfix")
    args = parser.parse_args()
    print(__doc__)
    with tempfile.TemporaryDirectory(prefix="vmta-bench-") as tmp:
        directory = Path(tmp)
        directory.chmod(0o755)  # Postfix's unprivileged daemons look into it
        if "vmta" in args.systems:
            run_vmta(directory / "vmta", args)
        if "postfix" in args.systems:
            run_postfix(directory / "postfix", args)


def run_vmta(directory: Path, args: argparse.Namespace) -> None:
    directory.mkdir()
    with (
        Sink(free_port(), directory / "sink.log") as sink,
        Vmta(
            directory / "serve",
            sink.port,
            connections=1,
            per_hour=1,
            env={"VMTA_MAX_QUEUED": str(args.messages)},
        ) as vmta,
    ):
        peak = Peak(vmta.tree())
        peak.start()
        seconds = inject(vmta.smtp_port, args.messages, args.size, args.sessions)
        time.sleep(10)
        phase1 = (peak.rss, peak.pss)
        accepted, refused = inject_counted(vmta.smtp_port, args.extra, args.size, 10)
        time.sleep(5)
        peak.stop.set()
        queue = api(vmta, "GET", "/api/queue")
        counts = queue["recipients"]
        assert isinstance(counts, dict)
        held = int(counts["queued"]) + int(counts["delivered"]) + int(counts["failed"])
        print(f"vmta: {args.messages} x {args.size} B injected in {seconds:.1f} s")
        print(f"vmta: peak RSS {phase1[0] / 2**20:.0f} MB (PSS {phase1[1] / 2**20:.0f} MB)")
        print(f"vmta: engine in memory: {queue.get('engine', {}).get('in_memory')}")  # type: ignore[union-attr]
        print(
            f"vmta: {args.extra} more while at the bound: {accepted} accepted, {refused} refused"
            f" (4xx); peak RSS then {peak.rss / 2**20:.0f} MB"
        )
        expected = args.messages + accepted
        verdict = "none lost" if held == expected else f"MISMATCH: {held} held, {expected} accepted"
        print(f"vmta: spool holds {held} recipients for {expected} accepted messages: {verdict}")


def run_postfix(directory: Path, args: argparse.Namespace) -> None:
    directory.mkdir(mode=0o755)
    with (
        Sink(free_port(), directory / "sink.log") as sink,
        Postfix(directory / "pf", sink.port, connections=1, sessions=args.sessions) as postfix,
    ):
        subprocess.run(
            ["postconf", "-c", str(postfix.config), "defer_transports = smtp relay"], check=True
        )
        subprocess.run(["postfix", "-c", str(postfix.config), "reload"], check=True)
        peak = Peak(postfix.tree())
        peak.start()
        seconds = inject(postfix.smtp_port, args.messages, args.size, args.sessions)
        time.sleep(10)
        peak.stop.set()
        print(f"postfix: {args.messages} x {args.size} B injected in {seconds:.1f} s")
        print(f"postfix: peak RSS {peak.rss / 2**20:.0f} MB (PSS {peak.pss / 2**20:.0f} MB)")


if __name__ == "__main__":
    main()
