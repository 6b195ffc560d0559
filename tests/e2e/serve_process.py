"""`vmta serve` as a real process for data-plane tests: fixed SMTP port (so a restarted
server takes over where the killed one was), API on a port the system chooses, a data
directory that outlives restarts, and a relay server that sends everything to a sink."""

from __future__ import annotations

import os
import re
import signal
import smtplib
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.free_ports import free_port
from tests.peers.sink import RecordingSink

VMTA = Path(sys.executable).with_name("vmta")
API_TOKEN = "durability-token-0123456789abcdefghij"
START_DEADLINE = 60.0  # seconds; bounds a hang on a loaded machine, measures nothing
STOP_DEADLINE = 30.0
API_LISTENING = re.compile(r"API listening on http://(127\.0\.0\.1:\d+)")
SOURCE_IP = "127.0.0.2"  # the relay server's source IP: what the sink sees as the peer
GA = "/ga/api/v3/eng"


def environment(**extra: str) -> dict[str, str]:
    """This process's environment without any VMTA_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMTA_")}
    # PYTHONDONTWRITEBYTECODE would make every `vmta` started here compile vmta's modules
    # again (about 0.2 s of CPU a start, hundreds of starts in a run): they write their
    # bytecode cache as Python does by default (__pycache__ is git-ignored).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    # Test MX hosts are sinks on loopback (dnsmasq publishes them); production refuses
    # those as mail loops (domain/paths/mail_loops.py). A test of the refusal overrides it.
    env["VMTA_MX_ALLOW_LOOPBACK"] = "true"
    env.update(extra)
    return env


def eventually(check: Callable[[], bool], deadline: float, step: float = 0.05) -> bool:
    """Poll ``check`` until it holds (True) or ``deadline`` seconds pass (False): a bound
    on a hang, not a timing assertion."""
    end = time.monotonic() + deadline
    while not check():
        if time.monotonic() > end:
            return False
        time.sleep(step)
    return True


def wait_until(check: Callable[[], bool], deadline: float, what: str, step: float = 0.05) -> None:
    if not eventually(check, deadline, step):
        pytest.fail(f"gave up waiting after {deadline:.0f} s: {what}")


def vmta(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run one `vmta` command to completion."""
    return subprocess.run(
        [str(VMTA), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@dataclass
class ServeProcess:
    """One run of `vmta serve`; each run logs to its own file."""

    data_dir: Path
    env: dict[str, str]
    smtp_port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    api_address: str = ""
    _client: httpx.Client | None = None

    def start(self) -> ServeProcess:
        args = [
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--smtp-listen",
            f"127.0.0.1:{self.smtp_port}",
            "--data-dir",
            str(self.data_dir),
        ]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(VMTA), *args],
                cwd=self.data_dir.parent,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        found: list[str] = []

        def listening() -> bool:
            found[:] = API_LISTENING.findall(self.log())
            if not found and self.proc is not None and self.proc.poll() is not None:
                pytest.fail(f"vmta serve exited with {self.proc.returncode}:\n{self.log()}")
            return bool(found)

        wait_until(listening, START_DEADLINE, "vmta serve to log where its API listens")
        self.api_address = found[-1]
        return self

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def api(self) -> httpx.Client:
        """An authenticated client of this run's API (one, reused)."""
        if self._client is None:
            self._client = httpx.Client(
                base_url=f"http://{self.api_address}",
                headers={"Authorization": f"Bearer {API_TOKEN}"},
                timeout=30.0,
            )
        return self._client

    def get(self, path: str) -> Any:
        response = self.api().get(path)
        assert response.status_code == 200, response.text
        return response.json()

    def kill9(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed or closed by vmta."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=STOP_DEADLINE)

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            pytest.fail(f"vmta serve did not stop within {STOP_DEADLINE} s after SIGTERM")

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class ServeFactory:
    """Starts `vmta serve` runs on one data directory and one SMTP port."""

    def __init__(self, tmp_path: Path, database_url: str | None) -> None:
        self.data_dir = tmp_path / "data"
        self.tmp_path = tmp_path
        self.smtp_port = free_port()
        extra = {
            "VMTA_API_TOKEN": API_TOKEN,
            "VMTA_HOSTNAME": "vmta.test",
            "VMTA_LOG_LEVEL": "INFO",
        }
        if database_url:
            extra["VMTA_DATABASE_URL"] = database_url
        self.env = environment(**extra)
        self.runs: list[ServeProcess] = []

    def configure(self, **settings: str) -> None:
        """More VMTA_* settings for the runs started from now on."""
        self.env.update(settings)

    def start(self) -> ServeProcess:
        run = ServeProcess(
            data_dir=self.data_dir,
            env=self.env,
            smtp_port=self.smtp_port,
            log_path=self.tmp_path / f"serve-{len(self.runs)}.log",
        )
        self.runs.append(run)
        return run.start()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`vmta ARGS --data-dir DATA` with the servers' settings (and database)."""
        return vmta(*args, "--data-dir", str(self.data_dir), env=self.env, cwd=self.tmp_path)

    def close(self) -> None:
        for run in self.runs:
            run.close()


def relay_to(
    server: ServeProcess,
    sink_port: int,
    name: str = "sink",
    *,
    connections: int = 0,
    per_hour: int = 0,
) -> None:
    """A relay server VirtualMTA from SOURCE_IP to the sink, made the default VirtualMTA,
    through the GreenArrow API (contract §2.5, §2.9); ``connections`` and ``per_hour``
    are its throttle limits (0: none)."""
    api = server.api()
    created = api.post(
        f"{GA}/relay_servers",
        json={
            "relay_server": {
                "name": name,
                "source_ip": {"ip": SOURCE_IP, "hostname": "out.vmta.test"},
                "destination": {"hostname": "127.0.0.1", "port": sink_port},
                "throttle_limits": {
                    "max_concurrent_connections": connections,
                    "max_messages_per_hour": per_hour,
                },
            }
        },
    )
    assert created.status_code == 200 and created.json()["success"], created.text
    default = api.put(f"{GA}/virtual_mtas/default", json={"virtual_mta": {"name": name}})
    assert default.status_code == 200 and default.json()["success"], default.text


def send_subjects(port: int, subjects: Sequence[str]) -> None:
    """One SMTP session to vmta on ``port``: a short message per subject."""
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        for subject in subjects:
            client.sendmail(
                "sender@src.test",
                ["rcpt@dest.test"],
                f"From: sender@src.test\r\nSubject: {subject}\r\n\r\nbody\r\n".encode(),
            )


def subjects_seen(sink: RecordingSink) -> Counter[str]:
    """How many times the sink got each subject."""
    return Counter(t.data.split(b"Subject: ")[1].split(b"\r\n")[0].decode() for t in sink.messages)
