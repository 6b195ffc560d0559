"""docs/cluster.md's two-node example, run as written by sh: only its first lines (the
database URL, the Redis URL, the admin secret) are set to the test's PostgreSQL schema,
Redis database and a known secret, and the ports to free ones. Both nodes must answer
with the one admin secret, name themselves by their host names, and a record made
through one node must be seen through the other."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.serve_process import VMTA, environment
from tests.free_ports import free_port

DOC = Path(__file__).resolve().parents[2] / "docs" / "cluster.md"
FENCE = re.compile(r"^```sh\n(.*?)^```\n", re.MULTILINE | re.DOTALL)
SECRET = "cluster-example-secret-0123456789abcdef"
DEADLINE = 90.0  # seconds: bounds a hang on a loaded machine


def example() -> str:
    (block,) = [b for b in FENCE.findall(DOC.read_text("utf-8")) if "NODE1=" in b]
    return str(block)


def alive(pid: int) -> bool:
    """Running, and not a zombie waiting for its (adoptive) parent."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def stop(pids: list[int]) -> None:
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow(17)
def test_the_two_node_example_runs(pg_url: str, tmp_path: Path) -> None:
    script = example()
    ports = [free_port() for _ in range(4)]
    for old, new in (
        (r"^DB=.*$", f"DB='{pg_url}'"),
        (r"^REDIS=.*$", "REDIS=redis://127.0.0.1:6379/15"),
        (r"^ADMIN_SECRET=.*$", f"ADMIN_SECRET={SECRET}"),
        (r"127\.0\.0\.1:8081", f"127.0.0.1:{ports[0]}"),
        (r"127\.0\.0\.1:2527", f"127.0.0.1:{ports[1]}"),
        (r"127\.0\.0\.1:8082", f"127.0.0.1:{ports[2]}"),
        (r"127\.0\.0\.1:2528", f"127.0.0.1:{ports[3]}"),
    ):
        script, count = re.subn(old, new, script, flags=re.MULTILINE)
        assert count == 1, old
    script = script.replace(".venv/bin/vmta", str(VMTA))
    pids: list[int] = []
    try:
        ran = subprocess.run(
            ["sh"],
            input=script,
            cwd=tmp_path,
            env=environment(),
            capture_output=True,
            text=True,
            timeout=DEADLINE * 2,
            check=False,
        )
        pids = [int((tmp_path / f"node{n}-data.pid").read_text()) for n in (1, 2)]
        assert ran.returncode == 0 and ran.stderr == "", ran.stderr
        # Both nodes answered /api/queue with the one secret.
        assert ran.stdout.count('"recipients":') == 2, ran.stdout
        auth = {"Authorization": f"Bearer {SECRET}"}
        node1, node2 = (f"http://127.0.0.1:{ports[i]}" for i in (0, 2))
        # A record made through node 1 is there through node 2: one database.
        created = httpx.post(
            f"{node1}/ga/api/v3/eng/ip_addresses",
            headers=auth,
            json={"ip_address": {"name": "shared", "ip": "127.0.0.2", "hostname": "a.example.com"}},
            timeout=30,
        )
        assert created.status_code == 200, created.text
        seen = httpx.get(
            f"{node2}/ga/api/v3/eng/ip_addresses?name=shared", headers=auth, timeout=30
        )
        assert [r["name"] for r in seen.json()["data"]["ip_addresses"]] == ["shared"]
        nodes = {
            httpx.get(f"{u}/api/queue", headers=auth, timeout=30).json()["engine"]["node"]
            for u in (node1, node2)
        }
        assert len(nodes) == 2
        for n in (1, 2):
            log = (tmp_path / f"node{n}-data.log").read_text()
            assert f"hostname: node{n}.example.com" in log
            assert "redis: 127.0.0.1:6379 database 15" in log
            assert not (tmp_path / f"node{n}-data" / "admin-token").exists()
    finally:
        stop(pids)
