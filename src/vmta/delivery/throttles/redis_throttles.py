"""Throttles shared by every node of a cluster, kept in Redis.

Connection slots are leases: each open connection is one member of a sorted set per
throttle key, scored with the time its lease ends. A node renews the leases of its open
connections (``renew``, every ``renew_interval`` seconds); the leases of a node that dies
end after ``lease_seconds`` and its slots come back to the others. Message pacing is the
generic cell rate algorithm with no burst: one value per key, the earliest time the next
message may go, advanced by 3600/M seconds at each send. Both live in Redis, so pacing
holds across nodes and across restarts. Every decision is one Lua script
(``vmta.delivery.throttles.redis_scripts``), atomic, timed by the Redis server's clock.

When Redis cannot be reached the answer is "wait": no connection slot is given and no
message may go, each call says to try again in ``unavailable_wait`` seconds. Mail waits
instead of going out unthrottled; a warning is logged at most once a minute.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from vmta.delivery.throttles.redis_scripts import ACQUIRE, RENEW, RESERVE
from vmta.delivery.throttles.throttle_backend import HOUR, WANT_FRESH
from vmta.resilience.link_state import LinkState

log = logging.getLogger(__name__)

MICRO = 1_000_000
DEFAULT_LEASE = 30.0  # seconds a connection slot stays taken without a renewal
REDIS_TIMEOUT = 2.0  # seconds: a hung Redis must not hang delivery
COMPLAINT_INTERVAL = 60.0  # seconds between two warnings that Redis is unreachable


class _Complaints:
    """Logs a problem at most once per interval, with how many were not logged."""

    def __init__(self, interval: float = COMPLAINT_INTERVAL) -> None:
        self.interval = interval
        self._last: float | None = None
        self._quiet = 0

    def __call__(self, what: str, exc: BaseException) -> None:
        now = time.monotonic()
        if self._last is not None and now - self._last < self.interval:
            self._quiet += 1
            return
        more = f" ({self._quiet} more failure(s) since the last warning)" if self._quiet else ""
        log.warning(
            "Redis throttles unreachable (%s: %s); mail waits until Redis answers%s",
            what,
            exc,
            more,
        )
        self._last = now
        self._quiet = 0


class RedisThrottles:
    def __init__(
        self,
        client: Redis,
        *,
        namespace: str = "vmta",
        lease_seconds: float = DEFAULT_LEASE,
        node: str = "",
        unavailable_wait: float = 5.0,
    ) -> None:
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        self._redis = client
        self.namespace = namespace
        self.lease_seconds = lease_seconds
        self.unavailable_wait = unavailable_wait
        self._node = node or secrets.token_hex(4)
        self._acquire = client.register_script(ACQUIRE)
        self._renew = client.register_script(RENEW)
        self._reserve = client.register_script(RESERVE)
        self._held: dict[str, tuple[str, int]] = {}  # token -> (key, limit)
        self._serial = itertools.count(1)
        self._complain = _Complaints()
        # Up or down, since when and why: /api/health shows it (only limited throttles
        # ask Redis; paths with no limit never do).
        self.link = LinkState("redis-throttles")

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        namespace: str = "vmta",
        lease_seconds: float = DEFAULT_LEASE,
        node: str = "",
    ) -> RedisThrottles:
        client = Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT
        )
        return cls(client, namespace=namespace, lease_seconds=lease_seconds, node=node)

    @property
    def renew_interval(self) -> float:
        """How often ``renew`` must run: three chances before a lease ends."""
        return self.lease_seconds / 3

    def _connections_key(self, key: str) -> str:
        return f"{self.namespace}:conn:{key}"

    def _pacing_key(self, key: str) -> str:
        return f"{self.namespace}:pace:{key}"

    def _want_key(self, key: str) -> str:
        return f"{self.namespace}:want:{key}"

    def _holding(self, key: str) -> int:
        return sum(1 for held_key, _limit in self._held.values() if held_key == key)

    def _token(self) -> str:
        # Unique across nodes (node name, random part) and within this process (serial).
        return f"{self._node}:{secrets.token_hex(4)}:{next(self._serial)}"

    # ---- connection slots --------------------------------------------------------------

    async def acquire_connection(self, key: str, limit: int) -> str | None:
        token = self._token()
        if not limit:
            return token  # no limit: nothing to count, nothing to share
        try:
            taken = await self._acquire(
                keys=[self._connections_key(key)],
                args=[limit, token, round(self.lease_seconds * MICRO)],
            )
        except (RedisError, OSError) as exc:
            self._complain("taking a connection slot", exc)
            self.link.lost(f"Redis: {type(exc).__name__}: {exc}", self.unavailable_wait)
            return None
        self.link.connected()
        if not taken:
            await self._want(key)
            return None
        self._held[token] = (key, limit)
        return token

    async def _want(self, key: str) -> None:
        """Every slot of ``key`` is taken: say so, with how many this node holds, for a
        node that holds more than its share (host_throttles.py says why). The record
        lives ``WANT_FRESH`` seconds; a node that still waits asks again every second."""
        record = f"{self._node}|{self._holding(key)}"
        try:
            await self._redis.set(self._want_key(key), record, px=round(WANT_FRESH * 1000))
        except (RedisError, OSError) as exc:
            self._complain("noting a wanted connection slot", exc)

    async def yield_to_waiter(self, key: str) -> bool:
        holding = self._holding(key)
        if holding < 2:
            return False
        try:
            raw = await self._redis.get(self._want_key(key))
        except (RedisError, OSError) as exc:
            self._complain("reading a wanted connection slot", exc)
            return False
        if raw is None:
            return False
        node, _, held = (raw.decode() if isinstance(raw, bytes) else str(raw)).rpartition("|")
        if node == self._node or not held.isdigit():
            return False
        return holding >= int(held) + 2

    async def release_connection(self, key: str, token: str) -> None:
        if self._held.pop(token, None) is None:
            return  # an unlimited key's token, or already released
        try:
            await self._redis.zrem(self._connections_key(key), token)
        except (RedisError, OSError) as exc:
            # The lease is no longer renewed, so the slot comes back when it ends.
            self._complain("giving back a connection slot", exc)

    async def renew(self) -> None:
        by_key: dict[str, list[str | int]] = {}
        for token, (key, limit) in self._held.items():
            by_key.setdefault(key, []).extend((token, limit))
        ttl = round(self.lease_seconds * MICRO)
        for key, pairs in by_key.items():
            try:
                lost = await self._renew(keys=[self._connections_key(key)], args=[ttl, *pairs])
            except (RedisError, OSError) as exc:
                self._complain("renewing connection slots", exc)
                return
            for raw in lost or ():
                token = raw.decode() if isinstance(raw, bytes) else str(raw)
                if self._held.pop(token, None) is not None:
                    log.warning(
                        "the lease of a connection slot of %s ended before it was renewed"
                        " and its slots are taken: the limit may be exceeded until that"
                        " connection closes",
                        key,
                    )

    def held(self) -> int:
        """Connection slots this node holds (for status pages and tests)."""
        return len(self._held)

    # ---- message pacing ----------------------------------------------------------------

    async def reserve_message(self, key: str, per_hour: int) -> float:
        wait, _at = await self.reserve_message_at(key, per_hour)
        return wait

    async def reserve_message_at(self, key: str, per_hour: int) -> tuple[float, float | None]:
        """``reserve_message``, plus the Redis time (seconds) of the slot taken, if one was:
        the time every node's spacing is measured by."""
        if not per_hour:
            return 0.0, None
        interval = round(HOUR / per_hour * MICRO)
        try:
            taken, value = await self._reserve(keys=[self._pacing_key(key)], args=[interval])
        except (RedisError, OSError) as exc:
            self._complain("taking a message slot", exc)
            self.link.lost(f"Redis: {type(exc).__name__}: {exc}", self.unavailable_wait)
            return self.unavailable_wait, None
        self.link.connected()
        if taken:
            return 0.0, int(value) / MICRO
        # At least a microsecond: 0.0 means "go" and must never be returned for a wait.
        return max(int(value), 1) / MICRO, None

    # ---- life cycle --------------------------------------------------------------------

    async def close(self) -> None:
        """Give back every slot this node holds (a clean stop frees them at once, not
        after their lease), then close the connection to Redis."""
        for token, (key, _limit) in list(self._held.items()):
            await self.release_connection(key, token)
        await self._redis.aclose()
