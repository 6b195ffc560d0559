"""Prometheus metrics (text exposition format, served at ``/metrics``; docs/metrics.md).

``DeliveryMetrics`` is what the data plane reports through: counters, gauges and
histograms the delivery code moves as things happen. What the database knows for the
whole cluster (recipients by state, event backlog) is read at scrape time by the
collector that ``/metrics`` adds to the same registry (``vmta.api.metrics_endpoint``).

Label values are bounded: a VirtualMTA or path label takes at most ``label_limit``
distinct values and then ``other``, so that a misconfiguration cannot grow the
exposition without end. A path is named by the address receivers see it come from
(``path_label``), never by destination domain (an IP address VirtualMTA has a throttle
per destination domain, which would make the label set unbounded).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from vmta.domain.attempts.engine_metrics import ACCEPT_SOURCES
from vmta.domain.attempts.spool_records import Outcome
from vmta.domain.paths.egress_route import EgressRoute

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own variable
OUTCOMES = ("delivered", "deferred", "failed", "bounced")
OTHER = "other"
NONE = "none"

# Seconds. Injection is a commit (milliseconds); delivery may take days of retries.
INJECTION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
DELIVERY_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 86400, 2 * 86400)
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600)


DEFAULT_PATH = "default"  # the host's default source address


def path_label(route: EgressRoute | None) -> str:
    """The path label of a delivery: the public IP receivers see (bounded by the
    configured IP addresses, relay servers and external MTAs)."""
    if route is None:
        return NONE
    return route.public_ip or DEFAULT_PATH


class _Bounded:
    """At most ``limit`` distinct values; later new ones become ``other``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str | None) -> str:
        text = value or NONE
        with self._lock:
            if text in self._seen:
                return text
            if len(self._seen) < self.limit:
                self._seen.add(text)
                return text
        return OTHER


class _ReadyQueues(Collector):
    """``vmta_ready_queue_length``: what waits in memory now, per path label."""

    def __init__(self, bound: _Bounded) -> None:
        self.bound = bound
        self.lengths: Callable[[], Mapping[str, int]] = dict

    def describe(self) -> Iterable[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        family = GaugeMetricFamily(
            "vmta_ready_queue_length",
            "Recipients waiting in memory for a connection of the path",
            labels=["path"],
        )
        totals: dict[str, int] = {}
        for path, n in self.lengths().items():
            label = self.bound(path)
            totals[label] = totals.get(label, 0) + n
        for label, n in sorted(totals.items()):
            family.add_metric([label], n)
        yield family


class DeliveryMetrics:
    """What the data plane moves. Every method is cheap and thread-safe."""

    def __init__(
        self, registry: CollectorRegistry | None = None, *, label_limit: int = 100
    ) -> None:
        self.registry = registry or CollectorRegistry()
        self._vmta = _Bounded(label_limit)
        self._path = _Bounded(label_limit)
        r = self.registry
        self.accepted_messages = Counter(
            "vmta_messages_accepted", "Messages accepted into the spool", ["source"], registry=r
        )
        by_route = ["virtual_mta", "path"]
        self.outcomes = {
            name: Counter(
                f"vmta_messages_{name}",
                f"Recipients {name} (one per recipient outcome)",
                by_route,
                registry=r,
            )
            for name in OUTCOMES
        }
        self.connections = Gauge(
            "vmta_connections_open",
            "Outbound SMTP connections open",
            ["path"],
            registry=r,
            multiprocess_mode="livesum",  # with VMTA_WORKERS: the live processes' sum
        )
        # Read from the engine at each scrape (``watch_ready``), not moved per message.
        self._ready = _ReadyQueues(self._path)
        r.register(self._ready)
        self.throttle_waits = Histogram(
            "vmta_throttle_wait_seconds",
            "Time a delivery waited for a throttle (messages per hour) before sending",
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.injection = Histogram(
            "vmta_injection_latency_seconds",
            "From the end of a message's data to its durable acceptance",
            buckets=INJECTION_BUCKETS,
            registry=r,
        )
        self.delivery = Histogram(
            "vmta_delivery_latency_seconds",
            "From acceptance to delivery, per delivered recipient",
            buckets=DELIVERY_BUCKETS,
            registry=r,
        )
        self.commits = Histogram(
            "vmta_spool_commit_seconds",
            "Duration of one spool transaction (a batch of accepts or outcomes)",
            buckets=COMMIT_BUCKETS,
            registry=r,
        )
        # Every series exists from the start, at 0.
        self._accepted_by_source = {
            source: self.accepted_messages.labels(source) for source in ACCEPT_SOURCES
        }

    def exposed(self) -> CollectorRegistry:
        """What ``/metrics`` serves. With worker processes (``VMTA_WORKERS``), every process
        writes its values to files in ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's
        multiprocess mode) and the sum over all of them is served; otherwise this
        process's registry."""
        if not os.environ.get(MULTIPROCESS_DIR):
            return self.registry
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        registry.register(self._ready)  # this process's ready queues (read at scrape)
        return registry

    # ---- what the data plane calls -----------------------------------------------------

    def outcome(self, label: str, virtual_mta: str | None, path: str | None) -> None:
        """One recipient's outcome: ``label`` delivered, deferred, failed or bounced (a
        delivery status notification was queued for it)."""
        counter = self.outcomes.get(label)
        if counter is not None:
            counter.labels(self._vmta(virtual_mta), self._path(path)).inc()

    def recorded(self, outcomes: Sequence[Outcome]) -> None:
        """Outcomes just committed to the spool: each attempt counts once."""
        for o in outcomes:
            if o.attempted or o.state != "queued":
                path = (o.source_ip or DEFAULT_PATH) if o.attempted else NONE
                self.outcome(o.outcome_label or o.state, o.virtual_mta, path)

    def connection_opened(self, path: str) -> None:
        self.connections.labels(self._path(path)).inc()

    def connection_closed(self, path: str) -> None:
        self.connections.labels(self._path(path)).dec()

    def watch_ready(self, lengths: Callable[[], Mapping[str, int]]) -> None:
        """The engine's ready queues, by path label, read at each scrape."""
        self._ready.lengths = lengths

    def throttle_wait(self, seconds: float) -> None:
        self.throttle_waits.observe(max(0.0, seconds))

    def accepted(self, source: str) -> None:
        """A message committed to the spool, by how it came (``ACCEPT_SOURCES``)."""
        label = source if source in ACCEPT_SOURCES else OTHER
        child = self._accepted_by_source.get(label)
        if child is None:  # labels() looks the series up by its values: once each
            child = self._accepted_by_source[label] = self.accepted_messages.labels(label)
        child.inc()

    def injected(self, latency: float) -> None:
        """How long an SMTP injection took, from DATA's end to the commit."""
        self.injection.observe(max(0.0, latency))

    def delivered(self, latency: float) -> None:
        self.delivery.observe(max(0.0, latency))

    def spool_commit(self, seconds: float) -> None:
        self.commits.observe(max(0.0, seconds))
