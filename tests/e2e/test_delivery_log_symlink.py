"""A symbolic link planted where the delivery log goes is refused at start-up with one
clear sentence and exit status 1, no traceback, and nothing written through it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.serve_process import API_TOKEN, environment, vmta

pytestmark = pytest.mark.one_database  # start-up refuses before any message


def test_a_planted_delivery_log_symlink_stops_start_up_cleanly(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    target = tmp_path / "elsewhere.txt"
    target.write_text("precious\n")
    (data / "delivery.log").symlink_to(target)
    done = vmta(
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--smtp-listen",
        "127.0.0.1:0",
        "--data-dir",
        str(data),
        env=environment(VMTA_API_TOKEN=API_TOKEN, VMTA_HOSTNAME="vmta.test"),
        cwd=tmp_path,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert f"vmta: cannot open the delivery log {data / 'delivery.log'}" in done.stderr
    assert "symbolic link" in done.stderr
    assert target.read_text() == "precious\n"
