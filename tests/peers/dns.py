"""A real DNS server for tests: dnsmasq publishing the MX, A and AAAA records a test asks for.

dnsmasq runs as a subprocess on 127.0.0.1 and a free port (UDP and TCP), answers only from
the records it was started with (``--no-resolv --no-hosts``, no configuration file), and
logs every query it receives, so a test can assert on what the server saw
(``queries()``). Names under a *local* domain (``test`` by default) that have no records
get NXDOMAIN; any other name gets REFUSED (dnsmasq has no upstream), which a resolver
sees as a server failure. ``restart(zone)`` serves new records on the same port.

Fixture (register with ``pytest_plugins`` in tests/conftest.py, or wrap
``DnsmasqServer`` in a local fixture): ``dnsmasq``, a stopped server; the test calls
``dnsmasq.start(zone)``. Without the program the test is skipped, except under CI.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO

import dns.exception
import dns.message
import dns.query
import pytest

from tests.conftest import skip_or_fail
from tests.free_ports import free_port

START_TIMEOUT = 10.0
_QUERY_LINE = re.compile(r"query\[(\w+)\] (\S+) from ")


@dataclass
class DnsZone:
    """Records to publish. Methods chain: ``DnsZone().mx("a.test", "mx.a.test", 10)``."""

    ttl: int = 60  # TTL of every answer (dnsmasq --local-ttl)
    local_domains: tuple[str, ...] = ("test",)  # unknown names under these: NXDOMAIN
    options: list[str] = field(default_factory=list)

    def mx(self, domain: str, host: str, preference: int) -> DnsZone:
        self.options.append(f"--mx-host={domain},{host},{preference}")
        return self

    def null_mx(self, domain: str) -> DnsZone:
        """RFC 7505: one MX, preference 0, target "."."""
        self.options.append(f"--mx-host={domain},.,0")
        return self

    def host(self, name: str, *addresses: str) -> DnsZone:
        """A and AAAA records of ``name``."""
        self.options.append(f"--host-record={name},{','.join(addresses)}")
        return self

    def argv(self) -> list[str]:
        locals_ = [f"--local=/{domain}/" for domain in self.local_domains]
        return [f"--local-ttl={self.ttl}", *locals_, *self.options]


class DnsmasqServer:
    def __init__(self, program: str) -> None:
        self.program = program
        self.host = "127.0.0.1"
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._log_start = 0

    @property
    def address(self) -> str:
        """``host:port``, as the resolver's server setting takes it."""
        return f"{self.host}:{self.port}"

    def start(self, zone: DnsZone) -> DnsmasqServer:
        """Start serving ``zone`` (on the same port after a stop) and wait until it answers."""
        attempts = 1 if self.port else 5
        output = ""
        for _ in range(attempts):
            port = self.port or free_port(self.host, udp=True)
            # A file, not a pipe: nobody has to read it while dnsmasq runs.
            log = tempfile.TemporaryFile()  # noqa: SIM115
            process = subprocess.Popen(self._argv(port, zone), stdout=log, stderr=log)
            if self._wait_answering(process, port):
                self._process, self._log, self.port = process, log, port
                self._log_start = log.tell()  # the readiness probe is not a test query
                return self
            process.kill()
            process.wait()
            log.seek(0)
            output = log.read().decode(errors="replace")
            log.close()
        raise RuntimeError(f"dnsmasq did not start: {output.strip()[-500:]}")

    def restart(self, zone: DnsZone) -> DnsmasqServer:
        """Serve ``zone`` instead, on the same port. The query log starts afresh."""
        self.stop()
        return self.start(zone)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def queries(self) -> list[tuple[str, str]]:
        """(type, name) of every query received since the server (re)started."""
        if self._log is None:
            return []
        self._log.flush()
        self._log.seek(self._log_start)
        text = self._log.read().decode(errors="replace")
        self._log.seek(0, os.SEEK_END)
        return [(m.group(1), m.group(2).lower()) for m in _QUERY_LINE.finditer(text)]

    def _argv(self, port: int, zone: DnsZone) -> list[str]:
        argv = [
            self.program,
            "--no-daemon",
            "--conf-file=/dev/null",  # nothing from /etc/dnsmasq.conf
            f"--port={port}",
            f"--listen-address={self.host}",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--pid-file=",  # no pid file
            "--log-queries",
            "--log-facility=-",  # log to stderr, our file
        ]
        if os.geteuid() == 0:
            argv.append("--user=root")  # otherwise it switches to "nobody" and may not log
        return argv + zone.argv()

    def _wait_answering(self, process: subprocess.Popen[bytes], port: int) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        probe = dns.message.make_query("ready.probe.invalid", "A")
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            try:
                dns.query.udp(probe, self.host, port=port, timeout=0.2)
                return True  # any answer, even REFUSED, means it is serving
            except (OSError, dns.exception.Timeout):
                time.sleep(0.05)
        return False


def require_dnsmasq() -> str:
    path = shutil.which("dnsmasq") or shutil.which("dnsmasq", path="/usr/sbin:/sbin")
    if path is None:
        skip_or_fail("dnsmasq is not installed (Debian package dnsmasq-base)")
    assert path is not None
    return path


@pytest.fixture
def dnsmasq() -> Iterator[DnsmasqServer]:
    """A dnsmasq server, not yet started: call ``start(zone)``. Stopped after the test."""
    server = DnsmasqServer(require_dnsmasq())
    try:
        yield server
    finally:
        server.stop()
