"""Sites: how many connections vmta opens to one MX that hosts many domains.

    .venv/bin/python bench/sites.py [--cases 150x30,10000x1000] [--limited K]

Method, printed with the figures:

1. dnsmasq (on 127.0.0.1, a free port) publishes D domains whose one MX is
   ``mx.shared.test`` at 127.0.0.30; a recording SMTP sink listens there (the tests'
   peers: tests/peers/dns.py, tests/peers/sink.py) and counts connections.
2. A data plane (spool on SQLite in a temporary directory, the delivery engine, the SMTP
   listener) runs in this process with the default engine settings, no VirtualMTA
   (direct MX delivery), and ``mx_allow_loopback`` (the MX is on loopback).
3. N messages, one recipient each, spread evenly over the D domains, are injected over 4
   SMTP sessions at once; the run ends when the sink has all N.

With ``--limited K``, the messages go through an IP address VirtualMTA (127.0.0.2)
whose throttle rules give each of the first K domains limits of its own (2 connections,
no hourly limit); the other domains have none.

Printed per case: connections the sink saw, most open at once, seconds. One path per
domain opened at least one connection per domain (30 for 150x30).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import smtplib
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' peers

from tests.peers.dns import DnsmasqServer, DnsZone
from tests.peers.sink import RecordingSink

from vmta.domain.config.virtual_mta import IpAddress, Limits, ThrottleRule
from vmta.runtime.data_plane import DataPlane
from vmta.runtime.data_plane_settings import DataPlaneSettings
from vmta.runtime.server import bind_listener
from vmta.runtime.settings import Listen
from vmta.store.store import Store
from vmta.store.virtual_mtas import VirtualMtaRepository

MX_IP = "127.0.0.30"
SESSIONS = 4


def send(port: int, recipients: list[str], selector: str | None) -> None:
    head = f"X-GreenArrow-MtaID: {selector}\r\n" if selector else ""
    with smtplib.SMTP("127.0.0.1", port, timeout=120) as client:
        for n, rcpt in enumerate(recipients):
            client.sendmail("s@src.test", [rcpt], f"{head}Subject: m{n}\r\n\r\nx\r\n")


def limit_domains(store: Store, names: list[str]) -> None:
    """An IP address VirtualMTA whose rules give each of ``names`` 2 connections."""
    rules = [ThrottleRule(domains=[name], limits=Limits(2, 0)) for name in names]
    with store.write() as conn:
        repo = VirtualMtaRepository(conn)
        ip = IpAddress(name="ip-1", ip="127.0.0.2", hostname="ip-1.bench.test", rules=rules)
        repo.insert(repo.prepare(ip, own_id=None))


async def run_case(
    messages: int, domains: int, directory: Path, limited: int = 0
) -> tuple[int, int, float]:
    names = [f"d{n}.bench.test" for n in range(domains)]
    zone = DnsZone().host("mx.shared.test", MX_IP)
    for name in names:
        zone.mx(name, "mx.shared.test", 10)
    dns = DnsmasqServer(shutil.which("dnsmasq") or "/usr/sbin/dnsmasq").start(zone)
    sink = RecordingSink(MX_IP, 0).start()
    store = Store.open(f"sqlite:///{directory / 'vmta.db'}")
    if limited:
        limit_domains(store, names[:limited])
    settings = DataPlaneSettings(
        hostname="vmta-bench.test",
        dns_servers=(dns.address,),
        delivery_port=sink.port,
        delivery_log=False,
        mx_allow_loopback=True,
    )
    data_dir = directory / "data"
    data_dir.mkdir()
    plane = DataPlane(store, settings, data_dir)
    sock = bind_listener(Listen("127.0.0.1", 0), "SMTP")
    await plane.start(sock)
    try:
        port = sock.getsockname()[1]
        recipients = [f"u{n}@{names[n % domains]}" for n in range(messages)]
        started = time.perf_counter()
        await asyncio.gather(
            *(
                asyncio.to_thread(send, port, recipients[i::SESSIONS], "ip-1" if limited else None)
                for i in range(SESSIONS)
            )
        )
        for _ in range(6000):  # at most 10 minutes
            if len(sink.messages) >= messages:
                break
            await asyncio.sleep(0.1)
        seconds = time.perf_counter() - started
        return len(sink.connections), sink.max_concurrent, seconds
    finally:
        await plane.stop()
        store.close()
        sink.stop()
        dns.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default="150x30,10000x1000")
    parser.add_argument("--limited", type=int, default=0, help="domains with limits of their own")
    args = parser.parse_args()
    for case in args.cases.split(","):
        messages, domains = (int(part) for part in case.split("x"))
        with tempfile.TemporaryDirectory() as tmp:
            connections, most, seconds = asyncio.run(
                run_case(messages, domains, Path(tmp), args.limited)
            )
        print(
            f"{messages:>6,} messages to {domains:>5,} domains ({args.limited} limited) at one MX:"
            f" {connections:4} connections ({most} at most at once), {seconds:.1f} s"
        )


if __name__ == "__main__":
    main()
