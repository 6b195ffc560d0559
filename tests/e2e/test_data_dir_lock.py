"""One `vmta serve` per SQLite data directory, with real processes: a second one on the
same directory is refused and the first goes on serving; after a kill -9 of the first
the lock is free at once (the kernel released it). On PostgreSQL several processes on
one data directory are nodes of a cluster, and both run."""

from __future__ import annotations

import pytest

from tests.e2e.serve_process import ServeFactory, ServeProcess, vmta
from tests.free_ports import free_port


def another_run(serve: ServeFactory) -> ServeProcess:
    """A run on the same data directory, with SMTP and API ports of its own."""
    run = ServeProcess(
        data_dir=serve.data_dir,
        env=serve.env,
        smtp_port=free_port(),
        log_path=serve.tmp_path / f"serve-{len(serve.runs)}.log",
    )
    serve.runs.append(run)
    return run


def refusal(serve: ServeFactory, pid: int) -> str:
    return (
        f"vmta: data directory {serve.data_dir} is in use by another `vmta serve`"
        f" (pid {pid}); with SQLite one vmta runs per data directory: use another"
        " --data-dir, or PostgreSQL (VMTA_DATABASE_URL) for several nodes"
    )


def start_second(serve: ServeFactory, **env: str) -> tuple[int, str]:
    args = ("serve", "--listen", "127.0.0.1:0", "--smtp-listen", "127.0.0.1:0")
    result = vmta(
        *args, "--data-dir", str(serve.data_dir), env=dict(serve.env, **env), cwd=serve.tmp_path
    )
    return result.returncode, result.stderr.strip()


@pytest.mark.slow(33)
def test_second_serve_on_one_data_dir(serve: ServeFactory, database_url: str | None) -> None:
    first = serve.start()
    assert first.proc is not None
    if database_url is not None:
        # PostgreSQL: several nodes are normal, even on one data directory.
        other = another_run(serve).start()
        assert other.get("/api/health")["status"] and first.get("/api/health")["status"]
        assert not (serve.data_dir / "serve.lock").exists()
        return
    assert start_second(serve) == (1, refusal(serve, first.proc.pid))
    # With worker processes too (the lock is taken before the metrics files are reset).
    assert start_second(serve, VMTA_WORKERS="2") == (1, refusal(serve, first.proc.pid))
    # The first is unaffected: still running and answering.
    assert first.proc.poll() is None
    assert first.get("/api/health")["status"]
    # kill -9: no handler runs, yet the lock is free for the next start at once.
    first.kill9()
    restarted = another_run(serve).start()
    assert restarted.get("/api/health")["status"]
    assert restarted.proc is not None
    assert start_second(serve) == (1, refusal(serve, restarted.proc.pid))
    # A clean stop releases it too.
    assert restarted.stop() == 0
    assert another_run(serve).start().get("/api/health")["status"]
