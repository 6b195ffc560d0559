"""Real proxies for egress tests: microsocks (SOCKS5) and tinyproxy (HTTP CONNECT).

Each runs as a subprocess on a free port of 127.0.0.1 and binds its outbound connections
to its own loopback address (microsocks 127.0.0.50, tinyproxy 127.0.0.52), so a sink can
tell from the peer IP that a connection came through the proxy. ``stop()``/``start()``
take a proxy down and up again on the same port for fault tests. Without the program the
test is skipped, except under CI (``skip_or_fail``).

Fixtures (registered as a plugin in tests/conftest.py): ``microsocks`` and
``tinyproxy_factory`` (tinyproxy needs the ports CONNECT may reach).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO

import pytest

from tests.conftest import skip_or_fail
from tests.free_ports import free_port

MICROSOCKS_EGRESS_IP = "127.0.0.50"
TINYPROXY_EGRESS_IP = "127.0.0.52"
START_TIMEOUT = 10.0


class ProxyProcess:
    """A proxy subprocess listening on 127.0.0.1:``port``."""

    def __init__(self, name: str, argv: Callable[[int], list[str]], egress_ip: str) -> None:
        self.name = name
        self.host = "127.0.0.1"
        self.port = 0
        self.egress_ip = egress_ip
        self._argv = argv
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> ProxyProcess:
        """Start (on the same port when restarting) and wait until it accepts."""
        attempts = 1 if self.port else 5
        for _ in range(attempts):
            port = self.port or free_port(self.host)
            # A file, not a pipe, that nobody has to read while the proxy runs; it lives
            # as long as the process, so no with-block.
            log = tempfile.TemporaryFile()  # noqa: SIM115
            process = subprocess.Popen(self._argv(port), stdout=log, stderr=subprocess.STDOUT)
            if self._wait_accepting(process, port):
                self._process, self._log, self.port = process, log, port
                return self
            # Most likely another program took the port between probe and bind.
            process.kill()
            process.wait()
            log.seek(0)
            output = log.read().decode(errors="replace")
            log.close()
        raise RuntimeError(f"{self.name} did not start: {output.strip()[-500:]}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def _wait_accepting(self, process: subprocess.Popen[bytes], port: int) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            try:
                with socket.create_connection((self.host, port), timeout=1):
                    return True
            except OSError:
                time.sleep(0.05)
        return False


def _require(program: str) -> str:
    path = shutil.which(program) or shutil.which(program, path="/usr/sbin:/usr/bin")
    if path is None:
        skip_or_fail(f"{program} is not installed (Debian package {program})")
    assert path is not None
    return path


@pytest.fixture
def microsocks() -> Iterator[ProxyProcess]:
    """microsocks on 127.0.0.1:<free port>, going out from 127.0.0.50."""
    program = _require("microsocks")
    proxy = ProxyProcess(
        "microsocks",
        lambda port: [program, "-i", "127.0.0.1", "-p", str(port), "-b", MICROSOCKS_EGRESS_IP],
        MICROSOCKS_EGRESS_IP,
    )
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def tinyproxy_factory(tmp_path: Path) -> Iterator[Callable[[Sequence[int]], ProxyProcess]]:
    """``tinyproxy_factory([port, ...])``: tinyproxy allowing CONNECT to those ports only,
    going out from 127.0.0.52. Every one started is stopped after the test."""
    program = _require("tinyproxy")
    started: list[ProxyProcess] = []

    def make(connect_ports: Sequence[int]) -> ProxyProcess:
        config = tmp_path / f"tinyproxy-{len(started)}.conf"

        def argv(port: int) -> list[str]:
            lines = [
                f"Port {port}",
                "Listen 127.0.0.1",
                f"Bind {TINYPROXY_EGRESS_IP}",
                "Timeout 30",
                "MaxClients 50",
                "Allow 127.0.0.0/8",  # clients bind loopback source addresses of their own
                "LogLevel Warning",
                *(f"ConnectPort {p}" for p in connect_ports),
            ]
            config.write_text("\n".join(lines) + "\n")
            return [program, "-d", "-c", str(config)]

        proxy = ProxyProcess("tinyproxy", argv, TINYPROXY_EGRESS_IP).start()
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.stop()
