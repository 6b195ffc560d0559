"""DeliveryMetrics: counters move once per call, labels stay bounded."""

from __future__ import annotations

from vmta.domain.attempts.spool_records import DELIVERED, QUEUED, Outcome
from vmta.domain.paths.egress_route import EgressProtocol, EgressRoute
from vmta.runtime.metrics import DeliveryMetrics, path_label


def sample(metrics: DeliveryMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_recorded_outcomes_count_attempts_only() -> None:
    metrics = DeliveryMetrics()
    metrics.recorded(
        [
            Outcome(1, "Q", 0.0, DELIVERED, outcome_label="delivered", virtual_mta="v",
                    source_ip="192.0.2.1"),
            Outcome(2, "Q", 0.0, QUEUED, outcome_label="deferred", virtual_mta="v",
                    source_ip="192.0.2.1"),
            Outcome(3, "Q", 0.0, QUEUED, attempted=False, outcome_label="deferred"),
        ]
    )  # fmt: skip
    labels = {"virtual_mta": "v", "path": "192.0.2.1"}
    assert sample(metrics, "vmta_messages_delivered_total", **labels) == 1
    assert sample(metrics, "vmta_messages_deferred_total", **labels) == 1
    assert sample(metrics, "vmta_messages_deferred_total", virtual_mta="none", path="none") == 0


def test_label_values_are_bounded() -> None:
    metrics = DeliveryMetrics(label_limit=2)
    for name in ("a", "b", "c", "d"):
        metrics.outcome("failed", name, "192.0.2.1")
    assert sample(metrics, "vmta_messages_failed_total", virtual_mta="a", path="192.0.2.1") == 1
    assert sample(metrics, "vmta_messages_failed_total", virtual_mta="other", path="192.0.2.1") == 2


def test_gauges_and_histograms() -> None:
    metrics = DeliveryMetrics()
    metrics.connection_opened("192.0.2.1")
    metrics.connection_opened("192.0.2.1")
    metrics.connection_closed("192.0.2.1")
    metrics.watch_ready(lambda: {"192.0.2.1": 7, "192.0.2.9": 0})
    metrics.injected(0.002)
    metrics.delivered(3.0)
    metrics.throttle_wait(1.5)
    metrics.spool_commit(0.001)
    assert sample(metrics, "vmta_connections_open", path="192.0.2.1") == 1
    assert sample(metrics, "vmta_ready_queue_length", path="192.0.2.1") == 7
    assert sample(metrics, "vmta_ready_queue_length", path="192.0.2.9") == 0
    assert sample(metrics, "vmta_messages_accepted_total", source="smtp") == 0  # intake counts
    for name in ("injection_latency", "delivery_latency", "throttle_wait", "spool_commit"):
        assert sample(metrics, f"vmta_{name}_seconds_count") == 1


def test_path_label_is_the_public_address() -> None:
    assert path_label(EgressRoute("203.0.113.5", "10.0.0.5", EgressProtocol.SOCKS)) == "203.0.113.5"
    assert path_label(EgressRoute(None, None)) == "default"
    assert path_label(None) == "none"
