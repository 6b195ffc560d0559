"""The failure-delay rule, driven by explicit times."""

from __future__ import annotations

from vmta.domain.auth_failures import FailureDelays


def test_free_then_doubling_then_bounded() -> None:
    delays = FailureDelays(free=3, base=1.0, ceiling=8.0, forget_after=100.0)
    waits = []
    for i in range(8):
        waits.append(delays.delay("192.0.2.1", float(i)))
        delays.failed("192.0.2.1", float(i))
    assert waits == [0, 0, 0, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert delays.delay("192.0.2.2", 8.0) == 0  # per client
    assert delays.delay("192.0.2.1", 8.0 + 101.0) == 0  # forgotten after a quiet while
    delays.failed("192.0.2.3", 0.0)
    delays.succeeded("192.0.2.3")
    assert delays.delay("192.0.2.3", 1.0) == 0


def test_memory_is_bounded() -> None:
    delays = FailureDelays(max_clients=10)
    for n in range(100):
        delays.failed(f"198.51.100.{n}", 0.0)
    assert len(delays._records) == 10
