"""The README's walk-through, run as written, twice in a row: `vmta serve` with its
defaults (but free ports, and a DNS server that answers nothing, so that no mail can go
to the real MX hosts of example.net whatever happens), `vmta sink` started with the
README's own command line, and the README's shell block run by dash or by bash, followed
by the README's MailerQ block, two times against the same vmta and sink. Each time the
message must arrive at the sink, authenticated, from the relay server's source IP, and
each step must answer what the README says it answers.

Only the values of the block's first lines (API, SMTP_PORT, SINK_PORT) and the port in
the sink's command line are replaced by free ones, and `.venv/bin/vmta` by this
interpreter's `vmta`; every other byte of the commands is the README's.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import skip_or_fail
from tests.e2e.serve_process import VMTA, ServeProcess, environment, wait_until
from tests.free_ports import free_port

README = Path(__file__).resolve().parents[2] / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.MULTILINE | re.DOTALL)
SINK_DEADLINE = 20.0  # seconds; bounds a hang, measures nothing
SCRIPT_DEADLINE = 120.0


def readme_blocks() -> list[tuple[str, str]]:
    """Every fenced code block of the README: (language, text)."""
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(README.read_text("utf-8"))]


def block_with(marker: str) -> tuple[str, str]:
    found = [block for block in readme_blocks() if marker in block[1]]
    assert len(found) == 1, f"the README should have one code block with {marker!r}"
    return found[0]


def with_ports(text: str, api: str, smtp: int, sink: int) -> str:
    """The block with its settings lines set to these ports (each must be there once)."""
    for pattern, value in (
        (r"^API=http://127\.0\.0\.1:8080$", f"API=http://{api}"),
        (r"^SMTP_PORT=2525$", f"SMTP_PORT={smtp}"),
        (r"^SINK_PORT=2526$", f"SINK_PORT={sink}"),
    ):
        text, count = re.subn(pattern, value, text, flags=re.MULTILINE)
        assert count == 1, pattern
    # Nothing else names a port or the API's address: the settings lines are the only place.
    assert "8080" not in text and "2526" not in text, text
    return text


class SinkProcess:
    def __init__(self, command: str, cwd: Path) -> None:
        self.log_path = cwd / "sink.log"
        self.argv = command.split()
        assert self.argv[0] == ".venv/bin/vmta", command
        self.argv[0] = str(VMTA)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.argv, cwd=cwd, env=environment(), stdout=log, stderr=subprocess.STDOUT
            )

    def output(self) -> str:
        return self.log_path.read_text("utf-8", errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def walkthrough_dir(tmp_path: Path) -> Iterator[tuple[Path, ServeProcess, int]]:
    """A directory where `vmta serve` runs with the README's defaults (data in
    ./vmta-data, the admin secret in vmta-data/admin-token), on free ports."""
    if shutil.which("curl") is None:
        skip_or_fail("the walk-through needs curl (Debian package curl)")
    smtp_port, sink_port = free_port(), free_port()
    server = ServeProcess(
        data_dir=tmp_path / "vmta-data",
        # A DNS server that never answers: an MX look-up can only fail (defer).
        env=environment(VMTA_LOG_LEVEL="INFO", VMTA_DNS_SERVERS="127.0.0.1:9"),
        smtp_port=smtp_port,
        log_path=tmp_path / "serve.log",
    )
    try:
        server.start()
        yield tmp_path, server, sink_port
    finally:
        server.close()


@pytest.mark.slow(18)
@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_the_walkthrough_delivers_to_the_sink_it_names(
    walkthrough_dir: tuple[Path, ServeProcess, int], shell: str
) -> None:
    cwd, server, sink_port = walkthrough_dir
    language, sink_block = block_with("vmta sink")
    assert language in ("sh", "bash")
    sink_command = sink_block.strip().replace("127.0.0.1:2526", f"127.0.0.1:{sink_port}")
    sink = SinkProcess(sink_command, cwd)
    try:
        wait_until(
            lambda: f"listening on 127.0.0.1:{sink_port}" in sink.output(),
            SINK_DEADLINE,
            f"the sink to listen:\n{sink.output()}",
        )
        language, walkthrough = block_with("TOKEN=$(cat vmta-data/admin-token)")
        assert language in ("sh", "bash")
        # The MailerQ block that follows reuses the walk-through's variables; its "2525"
        # is an external MTA's port, not vmta's.
        _, mailerq = block_with("/v1/externalmtas")
        assert "8080" not in mailerq
        script = with_ports(walkthrough, server.api_address, server.smtp_port, sink_port)
        script += mailerq
        for run in (1, 2):  # the same block again: it must be re-runnable
            queue_id = run_once(shell, script, cwd, run, server, sink)
            assert_delivered(server, cwd, queue_id)
            # What the sink saw: the message, from the relay server's source IP, after AUTH.
            lines = [line for line in sink.output().splitlines() if " message " in line]
            assert len(lines) == run, sink.output()
            assert (
                f"message {run} from 127.0.0.2 auth=myusername mail_from=<me@example.com>"
                " rcpt_to=<you@example.net>"
            ) in lines[-1]
        # Every attempt of both runs went to the sink, none anywhere else.
        log_lines = (cwd / "vmta-data" / "delivery.log").read_text("utf-8").splitlines()
        attempts = [json.loads(line) for line in log_lines]
        assert [(a["outcome"], a["remote_ip"]) for a in attempts] == [
            ("delivered", "127.0.0.1")
        ] * 2
    finally:
        sink.close()


def run_once(
    shell: str, script: str, cwd: Path, run: int, server: ServeProcess, sink: SinkProcess
) -> str:
    ran = subprocess.run(
        [shell],
        input=script,
        cwd=cwd,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=SCRIPT_DEADLINE,
        check=False,
    )
    assert ran.returncode == 0, f"run {run}:\n{ran.stdout}\n{ran.stderr}"
    assert ran.stderr == "", ran.stderr  # no shell error on any line
    # What the README says each step answers.
    assert re.search(
        r'"redirect":\{"type":"ip_address","id":\d+,"name":"ipaddr-1"\}', ran.stdout
    ), ran.stdout
    assert '"error_code":"validation_failed"' in ran.stdout
    assert "destination.port must be an integer from 1 to 65535" in ran.stdout
    assert (
        '[{"public_ip":"8.8.8.8","local_ip":"127.0.0.1","connect_port":"2525","protocol":"nat"},'
        '{"public_ip":"8.8.4.4","local_ip":"192.168.1.1","connect_port":"2525","protocol":"nat"}]'
    ) in ran.stdout
    assert "not delivered yet" not in ran.stdout, (
        f"run {run}:\n{ran.stdout}\n--- vmta serve ---\n{server.log()[-6000:]}"
        f"\n--- sink ---\n{sink.output()[-3000:]}"
    )
    queue_id = re.search(r"queued as (\w+)", ran.stdout)
    assert queue_id and queue_id.group(1) != "none", ran.stdout
    return queue_id.group(1)


def assert_delivered(server: ServeProcess, cwd: Path, queue_id: str) -> None:
    token = (cwd / "vmta-data" / "admin-token").read_text().strip()
    response = httpx.get(
        f"http://{server.api_address}/api/messages/{queue_id}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30.0,
    )
    assert response.status_code == 200, response.text
    delivered = response.json()["message"]
    assert [r["state"] for r in delivered["recipients"]] == ["delivered"], delivered
