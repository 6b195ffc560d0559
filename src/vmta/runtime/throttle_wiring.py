"""Which throttle backend a node uses: Redis when ``VMTA_REDIS_URL`` is set (limits hold
summed over every node of the cluster); files under the data directory shared by the
processes of this host when ``VMTA_WORKERS`` is more than 1; else this process's memory.
Dynamic Delivery's backoff state likewise: shared through Redis, or this process's own."""

from __future__ import annotations

import logging

from vmta.delivery.throttles.host_throttles import HostThrottles
from vmta.delivery.throttles.throttle_backend import LocalThrottles, ThrottleBackend
from vmta.delivery.throttles.throttle_backoffs import ThrottleBackoffs
from vmta.domain.clock import Clock
from vmta.runtime.settings import Settings
from vmta.store.database import parse_url

log = logging.getLogger(__name__)

PACING_FILE = "pacing.memory"
HOST_THROTTLES_DIR = "throttles"  # HostThrottles: one small file per throttle key


def throttle_backend(settings: Settings, clock: Clock, *, node: str = "") -> ThrottleBackend:
    """The backend for these settings. ``node`` names this node in the tokens it holds in
    Redis (for an operator reading Redis; uniqueness does not depend on it)."""
    if settings.redis_url:
        log.info(
            "throttles are shared through Redis (namespace %r, connection leases of %g s)",
            settings.redis_namespace,
            settings.redis_lease,
        )  # never the URL: it may carry a password
        # Imported here: redis-py costs every process about 7 MB that a node without
        # Redis never needs.
        from vmta.delivery.throttles.redis_throttles import RedisThrottles

        return RedisThrottles.from_url(
            settings.redis_url,
            namespace=settings.redis_namespace,
            lease_seconds=settings.redis_lease,
            node=node,
        )
    if parse_url(settings.effective_database_url).get_backend_name() == "postgresql":
        log.warning(
            "throttles are per node: without VMTA_REDIS_URL every node sharing this"
            " PostgreSQL database opens up to max_concurrent_connections and sends up to"
            " max_messages_per_hour on its own"
        )
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if settings.workers > 1:
        # Every worker process of this host holds the same limits (host_throttles.py).
        return HostThrottles(clock, settings.data_dir / HOST_THROTTLES_DIR)
    # The pacing memory lets a restarted node continue its spacing (throttle_backend.py).
    return LocalThrottles(clock, settings.data_dir / PACING_FILE)


def throttle_backoffs(settings: Settings, clock: Clock) -> ThrottleBackoffs:
    """Where backoff decisions live: in Redis (under ``VMTA_REDIS_NAMESPACE``), so that a
    throttle in backoff on one node is in backoff on every node, or this node's memory."""
    if settings.redis_url:
        from vmta.delivery.throttles.redis_backoffs import (
            RedisBackoffs,  # as above: only with Redis
        )

        return RedisBackoffs.from_url(settings.redis_url, clock, namespace=settings.redis_namespace)
    return ThrottleBackoffs()
