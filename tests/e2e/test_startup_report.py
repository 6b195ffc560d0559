"""`vmta --version`, and what a real `vmta serve` says when it starts: its effective
settings, a loud warning for a host name that is not fully qualified, and a warning
(never a refusal) for an unknown VMTA_* variable."""

from __future__ import annotations

import pytest

from tests.e2e.serve_process import ServeFactory, vmta
from vmta import __version__

pytestmark = pytest.mark.one_database


def test_version(serve: ServeFactory) -> None:
    result = vmta("--version", env=serve.env, cwd=serve.tmp_path)
    assert (result.returncode, result.stdout.strip()) == (0, f"vmta {__version__}")


def test_start_up_summary_and_warnings(serve: ServeFactory) -> None:
    serve.configure(VMTA_HOSTNAME="localhost", VMTA_DATA_DIRR="typo", VMTA_RETRY_BACKOFF="5,10")
    server = serve.start()
    log = server.log()
    for line in (
        f"vmta {__version__} starting",
        "hostname: localhost",
        f"database: sqlite:///{serve.data_dir.resolve()}/vmta.db",
        "redis: none (throttles are per node)",
        "DNS servers: the system resolver",
        "retry schedule (s): 5, 10;",
        "WARNING vmta.startup: host name 'localhost' is not a fully qualified domain name",
        "ignoring environment variable VMTA_DATA_DIRR: vmta has no such setting;"
        " did you mean VMTA_DATA_DIR?",
    ):
        assert line in log, line
    assert server.get("/api/health")["status"] == "ok"  # a warning, never fatal
