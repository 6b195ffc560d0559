"""Relay throughput: vmta against a private Postfix, side by side in one run.

    .venv/bin/python bench/relay_vs_postfix.py [--full] [--messages N] [--sizes 1024,10240,102400]
        [--sessions S] [--repetitions R] [--warmup N] [--systems vmta,postfix] [--dkim]

Method (docs/PERFORMANCE.md, "Relay throughput vs Postfix"), printed with the figures:

1. Chain: smtp-source -> relay under test on 127.0.0.1 -> smtp-sink on 127.0.0.1. The relay
   is `vmta serve` (fresh data directory; a relay server VirtualMTA pointing at the sink,
   made the default VirtualMTA) or a private Postfix instance (own config_directory and
   queue_directory in a temporary directory, relayhost = the sink). Each has its own sink.
   Both may open the same number of connections to the sink (--relay-connections).
   vmta runs with VMTA_WORKERS = --workers (default: the CPU count), as Postfix's daemons
   spread over every core by default.
2. Durability: both accept after fsync. Postfix's cleanup fsync()s each queue file before
   smtpd answers 250 (its default; no setting turns it off); vmta commits the message
   with SQLite WAL synchronous=FULL before it answers 250. Spool and queue live in the
   same temporary directory, so on the same file system.
3. For each message size: a fresh pair of servers, a warm-up batch through each (not
   counted), then --repetitions rounds of A B (vmta, Postfix). One run: smtp-source
   -s S -m N -l SIZE -d, plus --probe-sessions sessions of our own (default 5) that send
   back-to-back messages of the same size until smtp-source is done and time each
   transaction (MAIL sent to the 250 after the final dot): the injection latency p50/p99.
   Five give about 550 samples a round at 1 KB; one gave about 110, so its "p99" was the
   round's slowest transaction or the one before it (docs/PERFORMANCE.md, round 6).
4. Delivered messages per second = messages counted by the sink (smtp-sink -c) / time from
   the start of smtp-source to the moment the sink counted the last one (read every
   10 ms). Injection rate = N / smtp-source's run time. CPU = user+system seconds of the
   server's process tree (Postfix: master and every child, reaped children included),
   from the start until the server is idle again, per 1,000 messages. Memory = the peak
   of the tree's summed RSS (and PSS, which shares libraries fairly), sampled every 0.25 s.
5. With --dkim both relays sign every message with one 2048-bit RSA key generated for the
   run (rsa-sha256, relaxed/relaxed, d= the From domain): vmta with its own signer (the
   key imported through its dkim_keys API as the domain's default key), Postfix through
   an OpenDKIM milter (Debian's opendkim, Mode s), whose CPU and memory count as
   Postfix's. Before measuring, one message through each relay goes to a capturing sink
   and its signature is verified with dkimpy against the key's public half; the run stops
   if either is missing or does not verify.
6. Figures are medians over the repetitions with their spread (min-max); the ratio
   vmta/Postfix is taken per round (A and B measured back to back) and summarized the
   same way. Every loop is bounded in count and time.

Needs root (to start Postfix) and the Debian package postfix (smtp-source, smtp-sink);
`bench/run relay_vs_postfix` installs what is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from process_tree import ProcessTree, file_system, fsync_latency
from relay_peers import (
    DKIM_DOMAIN,
    DKIM_SELECTOR,
    FROM,
    TO,
    VMTA,
    CaptureSink,
    DkimKey,
    Postfix,
    Sink,
    Vmta,
    free_port,
    smtp_reply,
)

SMTP_SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
POLL = 0.01  # seconds between reads of the sink's counter
SAMPLE = 0.25  # seconds between memory samples
RESULTS = Path(__file__).resolve().parent / "results"


class Relay(Protocol):
    name: str
    smtp_port: int

    def tree(self) -> ProcessTree: ...


# ---- the probe: our own injecting session, timing every transaction -------------------


def probe_message(size: int, n: int) -> bytes:
    """Headers like smtp-source's, then ``size`` bytes of body in 78-character lines."""
    head = (
        f"From: <{FROM}>\r\nTo: <{TO}>\r\nSubject: probe {n}\r\n"
        f"Message-Id: <probe.{n}.{time.time_ns()}@bench.test>\r\n\r\n"
    ).encode("ascii")
    line = b"x" * 76 + b"\r\n"
    body = line * (size // len(line)) + b"y" * (size % len(line))
    return head + body + b"\r\n.\r\n"


class Probe(threading.Thread):
    """One SMTP session sending until told to stop (at most ``limit`` messages, at most
    ``max_seconds``), recording each transaction's latency in seconds."""

    def __init__(self, port: int, size: int, limit: int, max_seconds: float) -> None:
        super().__init__(daemon=True)
        self.port, self.size, self.limit, self.max_seconds = port, size, limit, max_seconds
        self.latencies: list[float] = []
        self.error: str | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            self._session()
        except (OSError, RuntimeError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"

    def _session(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        with socket.create_connection(("127.0.0.1", self.port), timeout=60) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            replies = sock.makefile("rb")

            def command(line: bytes, expect: int) -> None:
                sock.sendall(line)
                code, text = smtp_reply(replies)
                if code != expect:
                    raise RuntimeError(f"{line[:20]!r} answered {code} {text}")

            command(b"", 220)
            command(b"EHLO probe.bench.test\r\n", 250)
            for n in range(self.limit):
                if self.stop.is_set() or time.monotonic() > deadline:
                    break
                message = probe_message(self.size, n)
                started = time.perf_counter()
                command(f"MAIL FROM:<{FROM}>\r\n".encode(), 250)
                command(f"RCPT TO:<{TO}>\r\n".encode(), 250)
                command(b"DATA\r\n", 354)
                command(message, 250)
                self.latencies.append(time.perf_counter() - started)
            command(b"QUIT\r\n", 221)


# ---- one run --------------------------------------------------------------------------


@dataclass
class Run:
    system: str
    size: int
    messages: int  # counted at the sink (smtp-source's plus the probes')
    delivered_per_s: float
    injected_per_s: float
    p50_ms: float
    p99_ms: float
    cpu_per_1000: float
    rss_mb: float
    pss_mb: float
    probe_samples: int
    seconds: float


def percentile(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def settle(tree: ProcessTree, max_seconds: float = 15.0) -> None:
    """Wait until the server is idle: under 10 ms of CPU in 0.5 s (at most max_seconds),
    so that the work that follows a delivery (removing the queue file, recording the
    outcome) is counted, and the next run starts on an idle server."""
    deadline = time.monotonic() + max_seconds
    before = tree.cpu_seconds()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = tree.cpu_seconds()
        if now - before < 0.01:
            return
        before = now


def run_once(relay: Relay, sink: Sink, size: int, args: argparse.Namespace) -> Run:
    tree = relay.tree()
    settle(tree)
    counted_before = sink.count()
    cpu_before = tree.cpu_seconds()
    rss = pss = 0
    probes = [
        Probe(relay.smtp_port, size, args.messages, args.max_seconds)
        for _ in range(args.probe_sessions)
    ]
    command = [SMTP_SOURCE, "-s", str(args.sessions), "-m", str(args.messages), "-l", str(size)]
    command += ["-d", "-M", "bench.test", "-f", FROM, "-t", TO, f"127.0.0.1:{relay.smtp_port}"]
    started = time.perf_counter()
    source = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for probe in probes:
        probe.start()
    injected_at: float | None = None
    target: int | None = None
    last_at = started
    next_sample = 0.0
    deadline = time.monotonic() + args.max_seconds
    try:
        while True:
            now = time.perf_counter()
            if now >= next_sample:
                memory = tree.memory()
                rss, pss = max(rss, memory[0]), max(pss, memory[1])
                next_sample = now + SAMPLE
            if injected_at is None and source.poll() is not None:
                injected_at = time.perf_counter()
                for probe in probes:
                    probe.stop.set()
                for probe in probes:
                    probe.join(timeout=120)
                if source.returncode != 0:
                    error = source.stderr.read().decode(errors="replace") if source.stderr else ""
                    raise SystemExit(f"smtp-source into {relay.name} failed: {error.strip()}")
                for probe in probes:
                    if probe.error:
                        raise SystemExit(f"probe into {relay.name} failed: {probe.error}")
                target = args.messages + sum(len(p.latencies) for p in probes)
            counted = sink.count() - counted_before
            if target is not None and counted >= target:
                last_at = sink.changed_at
                break
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"{relay.name}: only {counted} of {target or '?'} messages reached the sink"
                    f" within {args.max_seconds:.0f} s"
                )
            time.sleep(POLL)
    finally:  # on failure too: nothing keeps sending once the run is over
        for probe in probes:
            probe.stop.set()
        if source.poll() is None:
            source.kill()
            source.wait(timeout=30)
    settle(tree)
    cpu = tree.cpu_seconds() - cpu_before
    latencies = [s for p in probes for s in p.latencies]
    elapsed = last_at - started
    assert injected_at is not None and target is not None
    return Run(
        system=relay.name,
        size=size,
        messages=target,
        delivered_per_s=target / elapsed,
        injected_per_s=args.messages / (injected_at - started),
        p50_ms=percentile(latencies, 0.50) * 1e3,
        p99_ms=percentile(latencies, 0.99) * 1e3,
        cpu_per_1000=cpu / target * 1000,
        rss_mb=rss / 2**20,
        pss_mb=pss / 2**20,
        probe_samples=len(latencies),
        seconds=elapsed,
    )


# ---- the benchmark ----------------------------------------------------------------------


@dataclass
class Cell:
    runs: list[Run] = field(default_factory=list)

    def median(self, name: str) -> float:
        return float(statistics.median(getattr(r, name) for r in self.runs))

    def spread(self, name: str) -> str:
        values = [getattr(r, name) for r in self.runs]
        return f"{min(values):,.0f}-{max(values):,.0f}"


@contextlib.contextmanager
def relays(
    systems: Sequence[str], workdir: Path, args: argparse.Namespace
) -> Iterator[list[tuple[Relay, Sink]]]:
    """Fresh servers, each with its own sink, stopped in reverse order afterwards."""
    with contextlib.ExitStack() as stack:
        pairs: list[tuple[Relay, Sink]] = []
        for system in systems:
            sink = stack.enter_context(Sink(free_port(), workdir / f"{system}-sink.log"))
            relay: Relay
            if system == "vmta":
                relay = stack.enter_context(
                    Vmta(
                        workdir / "vmta",
                        sink.port,
                        args.relay_connections,
                        env={"VMTA_WORKERS": str(args.workers)},
                        dkim=args.dkim_key,
                    )
                )
            else:
                relay = stack.enter_context(
                    Postfix(
                        workdir / "postfix",
                        sink.port,
                        args.relay_connections,
                        args.sessions + args.probe_sessions,
                        dkim=args.dkim_key,
                    )
                )
            pairs.append((relay, sink))
        yield pairs


def bench_size(
    size: int, systems: Sequence[str], args: argparse.Namespace, all_runs: list[Run]
) -> dict[str, Cell]:
    cells = {system: Cell() for system in systems}
    workdir = Path(tempfile.mkdtemp(prefix="vmta-relay-bench-", dir=args.workdir))
    workdir.chmod(0o755)  # Postfix's unprivileged daemons look into it
    try:
        with relays(systems, workdir, args) as pairs:
            warm = argparse.Namespace(**{**vars(args), "messages": args.warmup})
            for relay, sink in pairs:
                run_once(relay, sink, size, warm)
            for repetition in range(args.repetitions):
                for relay, sink in pairs:
                    result = run_once(relay, sink, size, args)
                    cells[relay.name].runs.append(result)
                    all_runs.append(result)
                    print(
                        f"  {size // 1024:>3} KB round {repetition + 1} {relay.name:<8}"
                        f" {result.delivered_per_s:8,.0f} delivered/s"
                        f" {result.injected_per_s:8,.0f} injected/s"
                        f"  p99 {result.p99_ms:6.1f} ms  {result.seconds:5.1f} s",
                        flush=True,
                    )
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return cells


def verify_signing(args: argparse.Namespace) -> None:
    """One message through each relay to a capturing sink; its DKIM signature must verify
    (dkimpy, against the run's public key) before anything is measured."""
    import dkim  # dkimpy: an independent verifier, from the dev extras

    key: DkimKey = args.dkim_key
    record = key.txt_record()
    expected_name = f"{DKIM_SELECTOR}._domainkey.{DKIM_DOMAIN}."

    def dns(name: bytes | str, timeout: int = 5) -> bytes | None:
        wanted = name.decode() if isinstance(name, bytes) else name
        return record if wanted.rstrip(".") + "." == expected_name else None

    workdir = Path(tempfile.mkdtemp(prefix="vmta-dkim-check-", dir=args.workdir))
    workdir.chmod(0o755)
    try:
        for system in args.system_list:
            with contextlib.ExitStack() as stack:
                sink = stack.enter_context(CaptureSink())
                relay: Relay
                if system == "vmta":
                    relay = stack.enter_context(
                        Vmta(workdir / system, sink.port, 1, dkim=key, env={"VMTA_WORKERS": "1"})
                    )
                else:
                    relay = stack.enter_context(
                        Postfix(workdir / system, sink.port, 1, 10, dkim=key)
                    )
                message = probe_message(2048, 0)[: -len(b"\r\n.\r\n")] + b"\r\n"
                with socket.create_connection(("127.0.0.1", relay.smtp_port), timeout=60) as s:
                    replies = s.makefile("rb")
                    smtp_reply(replies)
                    for line, code in (
                        (b"EHLO check.bench.test\r\n", 250),
                        (f"MAIL FROM:<{FROM}>\r\n".encode(), 250),
                        (f"RCPT TO:<{TO}>\r\n".encode(), 250),
                        (b"DATA\r\n", 354),
                        (message + b".\r\n", 250),
                        (b"QUIT\r\n", 221),
                    ):
                        s.sendall(line)
                        got, text = smtp_reply(replies)
                        if got != code:
                            raise SystemExit(f"DKIM check: {system} answered {text}")
                received = sink.wait_for(1)[0]
                if b"DKIM-Signature:" not in received:
                    raise SystemExit(f"DKIM check: {system} delivered an unsigned message")
                if not dkim.verify(received, dnsfunc=dns):
                    raise SystemExit(f"DKIM check: {system}'s signature does not verify")
                print(f"DKIM check: {system}'s signature verifies (dkimpy)", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def ratios(cells: dict[str, Cell], name: str) -> list[float]:
    """vmta/Postfix per round (runs measured back to back)."""
    pairs = zip(cells["vmta"].runs, cells["postfix"].runs, strict=True)
    return [getattr(a, name) / getattr(b, name) for a, b in pairs]


def report(results: dict[int, dict[str, Cell]], args: argparse.Namespace) -> None:
    signing = (
        f"both sign with one {args.dkim_key.bits}-bit RSA key (Postfix through OpenDKIM)"
        if args.dkim_key is not None
        else "no DKIM signing"
    )
    print(
        f"\n{signing}; {args.messages:,} messages + probe per run,"
        f" {args.sessions} smtp-source sessions"
        f" + {args.probe_sessions} probe, {args.relay_connections} relay connections"
        f" (vmta: VMTA_WORKERS={args.workers}),"
        f" median of {args.repetitions} (spread min-max)\n"
    )
    print(
        "| size | system | delivered/s | injected/s | p50 ms | p99 ms |"
        " CPU s/1k msgs | peak RSS MB | peak PSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for size, cells in results.items():
        for system, cell in cells.items():
            print(
                f"| {size // 1024} KB | {system} | {cell.median('delivered_per_s'):,.0f}"
                f" ({cell.spread('delivered_per_s')}) | {cell.median('injected_per_s'):,.0f}"
                f" | {cell.median('p50_ms'):.1f} | {cell.median('p99_ms'):.1f}"
                f" | {cell.median('cpu_per_1000'):.2f} | {cell.median('rss_mb'):.0f}"
                f" | {cell.median('pss_mb'):.0f} |"
            )
    if not all({"vmta", "postfix"} <= set(cells) for cells in results.values()):
        return
    print()
    for size, cells in results.items():
        speed = ratios(cells, "delivered_per_s")
        cpu = ratios(cells, "cpu_per_1000")
        p99 = ratios(cells, "p99_ms")
        print(
            f"{size // 1024} KB: vmta/Postfix delivered/s = {statistics.median(speed):.2f}"
            f" (rounds {min(speed):.2f}-{max(speed):.2f}); CPU per message"
            f" {statistics.median(cpu):.2f}x; p99 latency {statistics.median(p99):.2f}x"
        )


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    models = re.findall(r"model name\s*:\s*(.+)", cpuinfo.read_text()) if cpuinfo.exists() else []
    postfix = subprocess.run(
        ["postconf", "-h", "mail_version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return (
        f"{os.cpu_count()} CPUs ({models[0] if models else platform.processor()}),"
        f" {platform.system()} {platform.release()}, Python {platform.python_version()},"
        f" Postfix {postfix or '?'}, vmta {vmta_version()}"
    )


def vmta_version() -> str:
    """The commit measured, and where `vmta serve` will import vmta from."""
    repo = Path(__file__).resolve().parent.parent
    commit = subprocess.run(
        ["git", "-C", str(repo), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    found = subprocess.run(
        [str(VMTA.with_name("python")), "-c", "import vmta; print(vmta.__file__)"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return f"{commit or 'unknown commit'} (imported from {Path(found).parent.parent or '?'})"


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--full", action="store_true", help="the full method: 20,000 messages x 5")
    parser.add_argument("--messages", type=int, help="per run (default 5,000; --full 20,000)")
    parser.add_argument(
        "--sizes", default="1024,10240,102400", help="message body bytes, comma-separated"
    )
    parser.add_argument("--sessions", type=int, default=50, help="smtp-source sessions (-s)")
    parser.add_argument("--probe-sessions", type=int, default=5, help="latency probe sessions")
    parser.add_argument("--repetitions", type=int, help="rounds (default 3; --full 5)")
    parser.add_argument("--warmup", type=int, help="messages before measuring (default 1,000)")
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="vmta's VMTA_WORKERS (default: the CPU count, as Postfix too uses every core)",
    )
    parser.add_argument("--relay-connections", type=int, default=20, help="to the sink, each")
    parser.add_argument("--systems", default="vmta,postfix", help="vmta, postfix or both")
    parser.add_argument("--max-seconds", type=float, default=900, help="bound on one run")
    parser.add_argument("--workdir", default=None, help="parent of the temporary directories")
    parser.add_argument("--keep", action="store_true", help="keep spool, queue and logs")
    parser.add_argument(
        "--dkim",
        action="store_true",
        help="both sign every message with one 2048-bit RSA key (Postfix through OpenDKIM)",
    )
    args = parser.parse_args()
    args.messages = args.messages or (20_000 if args.full else 5_000)
    args.repetitions = args.repetitions or (5 if args.full else 3)
    args.warmup = args.warmup or (2_000 if args.full else 1_000)
    args.size_list = [int(s) for s in args.sizes.split(",") if s.strip()]
    args.dkim_key = DkimKey() if args.dkim else None
    args.system_list = [s.strip() for s in args.systems.split(",") if s.strip()]
    if not set(args.system_list) <= {"vmta", "postfix"} or not args.system_list:
        parser.error("--systems takes vmta, postfix or vmta,postfix")
    if not (1 <= args.sessions <= 500 and 1 <= args.probe_sessions <= 10):
        parser.error("--sessions must be 1-500 and --probe-sessions 1-10")
    if args.messages < 1 or args.repetitions < 1 or not args.size_list:
        parser.error("--messages, --repetitions and --sizes must be positive")
    return args


def main() -> None:
    args = arguments()
    if "postfix" in args.system_list and os.geteuid() != 0:
        raise SystemExit("a private Postfix instance needs root to start: run as root")
    if not Path(SMTP_SOURCE).exists():
        raise SystemExit("smtp-source is missing: install the Debian package postfix")
    where = Path(args.workdir or tempfile.gettempdir())
    print(f"machine: {machine()}")
    print(
        f"durability: both accept after fsync (Postfix: queue file fsync; vmta: SQLite WAL"
        f" synchronous=FULL); spool and queue on {file_system(where)},"
        f" fsync of 4 KB there: p50 {fsync_latency(where) * 1e3:.1f} ms",
        flush=True,
    )
    if args.dkim_key is not None:
        verify_signing(args)
    results: dict[int, dict[str, Cell]] = {}
    all_runs: list[Run] = []
    for size in args.size_list:
        results[size] = bench_size(size, args.system_list, args, all_runs)
    report(results, args)
    RESULTS.mkdir(exist_ok=True)
    variant = "-dkim" if args.dkim_key is not None else ""
    out = RESULTS / f"relay_vs_postfix{variant}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps([asdict(r) for r in all_runs], indent=1) + "\n")
    print(f"\nevery run: {out}")


if __name__ == "__main__":
    main()
