"""Session counts shared by the worker processes of a node (smtp/session_counts.py): the
caps and the stress threshold count every process's sessions. Two processes are two
objects on one file here (the cross-process test is tests/e2e/test_session_caps_workers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmta.smtp.session_counts import TOO_MANY, TOO_MANY_FROM_CLIENT, SharedSessionCounts
from vmta.smtp.session_registry import SessionCaps, SessionRegistry

pytestmark = pytest.mark.one_database


class FakeSession:
    def __init__(self, client: str) -> None:
        self.client = client
        self.stressed = 0

    def shutdown_requested(self) -> None: ...

    def close_now(self) -> None: ...

    def stress_began(self) -> None:
        self.stressed += 1


def test_caps_hold_summed_over_the_processes(tmp_path: Path) -> None:
    path = tmp_path / "counts"
    first = SharedSessionCounts(path, 0, 2)
    second = SharedSessionCounts(path, 1, 2)
    for _ in range(6):
        assert first.admit("10.0.0.1", 20, 10) is None
    for _ in range(4):
        assert second.admit("10.0.0.1", 20, 10) is None
    assert first.admit("10.0.0.1", 20, 10) == TOO_MANY_FROM_CLIENT
    assert second.admit("10.0.0.1", 20, 10) == TOO_MANY_FROM_CLIENT
    assert first.of_client("10.0.0.1") == second.of_client("10.0.0.1") == 10
    for n in range(10):
        assert (first if n % 2 else second).admit(f"10.0.1.{n}", 20, 10) is None
    assert first.total() == second.total() == 20
    assert second.admit("10.0.2.1", 20, 10) == TOO_MANY
    first.release("10.0.0.1")
    assert second.admit("10.0.0.1", 20, 10) is None  # the place freed by the other
    first.release("10.9.9.9")  # never admitted here: nothing changes
    assert first.total() == 20
    first.close()
    second.close()


def test_a_restarted_process_starts_from_zero_and_process_0_clears_all(tmp_path: Path) -> None:
    path = tmp_path / "counts"
    first = SharedSessionCounts(path, 0, 2)
    second = SharedSessionCounts(path, 1, 2)
    for _ in range(3):
        assert second.admit("10.0.0.1", 20, 10) is None
    assert first.admit("10.0.0.2", 20, 10) is None
    # The worker was killed: its sessions died with it; its replacement counts afresh.
    replacement = SharedSessionCounts(path, 1, 2)
    assert first.total() == 1
    assert replacement.admit("10.0.0.1", 20, 10) is None
    restarted_serve = SharedSessionCounts(path, 0, 2)
    assert restarted_serve.total() == 0
    for counts in (first, second, replacement, restarted_serve):
        counts.close()


def test_stress_is_the_nodes(tmp_path: Path) -> None:
    caps = SessionCaps(max_sessions=10, max_per_client=10, timeout=300.0, stress_timeout=10.0)
    path = tmp_path / "counts"
    one = SessionRegistry(caps, "vmta.test", SharedSessionCounts(path, 0, 2))
    two = SessionRegistry(caps, "vmta.test", SharedSessionCounts(path, 1, 2))
    idle = FakeSession("10.0.0.1")
    assert one.admit(idle) is None
    for n in range(6):
        assert two.admit(FakeSession(f"10.0.1.{n}")) is None
    assert one.idle_timeout() == 300.0  # 7 of 10: the threshold (8) is one more
    assert two.admit(FakeSession("10.0.2.1")) is None
    assert one.idle_timeout() == 10.0  # the other process's sessions count
    one._notice_stress()  # what its watcher does every second
    assert idle.stressed == 1
    refused = [two.admit(FakeSession(f"10.0.3.{n}")) for n in range(3)]
    assert refused[:2] == [None, None]
    assert refused[2] is not None and refused[2].startswith("421 4.7.0")
    one.release(idle)
    assert two.admit(FakeSession("10.0.4.1")) is None
