"""Dynamic Delivery backoff shared by every node of a cluster, through Redis.

Each node measures the outcomes of its own attempts (``ThrottleBackoffs``); what is
shared is the decision. When a trigger fires on one node, that node writes the backoff
to Redis, and every node applies it: reduced limits for the same throttle until the same
``backoff_ends_at``. Ending it by hand on any node deletes it from Redis, and every node
returns to the normal limits.

In Redis, per throttle in backoff, one string ``{namespace}:backoff:{member}`` (``member``
is the throttle key as a JSON array) holding the backoff as JSON: its times, the program
that decided it and where the throttle comes from (so that a node that never sent
through it can show it in the Throttles API, contract §2.11). Its Redis TTL is the time
left, so a backoff whose time is up vanishes even when no node is running. A set
``{namespace}:backoffs`` names them, for listing (members whose string is gone are
dropped as they are read). The scripts are atomic: two nodes deciding at once leave one
backoff, the first written, and the other node adopts it.

Times are those of the node that decided (its clock: ``began_at``, ``ends_at``), and
every node compares ``ends_at`` with its own clock, so the nodes' clocks must agree
(NTP); a test's manual clock drives expiry on every node. The scripts name only their
own keys and the index set's members, which suits one Redis server (not Redis Cluster).

Every node reads the shared state every ``sync_interval`` seconds (and before the
Throttles API answers), so a backoff begun or ended elsewhere applies here within that
time. When Redis cannot be reached, each node goes on with what it last knew and what it
decides itself (mail is never held back for want of Redis: backoff only slows delivery),
and publishes its own decisions once Redis answers again; a warning is logged at most
once a minute.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Coroutine
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from vmta.delivery.throttles.backoff_record import as_text, decode, encode, key_of, member_of
from vmta.delivery.throttles.redis_throttles import COMPLAINT_INTERVAL, REDIS_TIMEOUT
from vmta.delivery.throttles.throttle_backoffs import ThrottleBackoffs, _Entry
from vmta.domain.clock import Clock
from vmta.domain.limits.throttle_backoff import MIN_ATTEMPTS, WINDOW_SECONDS
from vmta.domain.limits.throttle_identity import ThrottleKey

log = logging.getLogger(__name__)

SYNC_INTERVAL = 1.0  # seconds between two reads of the shared state

# KEYS[1]: the index set, KEYS[2]: the throttle's backoff. ARGV: the backoff (JSON), its
# TTL (ms), the index member, the deciding node's time (s). A backoff still in force is
# kept and returned; otherwise the new one is written and returned.
START = """
local current = redis.call('GET', KEYS[2])
if current then
  local ok, record = pcall(cjson.decode, current)
  if ok and type(record) == 'table' and tonumber(record.ends_at)
      and tonumber(record.ends_at) > tonumber(ARGV[4]) then
    return current
  end
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[1], ARGV[3])
return ARGV[1]
"""

# KEYS[1]: the index set, KEYS[2]: the throttle's backoff; ARGV[1]: the index member.
# Returns 1 when a backoff was there.
END = """
local gone = redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[1], ARGV[1])
return gone
"""

# KEYS[1]: the index set; ARGV[1]: the prefix of the backoff strings. Returns member,
# backoff, member, backoff, ...; members whose backoff expired leave the index.
READ = """
local found = {}
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local value = redis.call('GET', ARGV[1] .. member)
  if value then
    found[#found + 1] = member
    found[#found + 1] = value
  else
    redis.call('SREM', KEYS[1], member)
  end
end
return found
"""


class RedisBackoffs(ThrottleBackoffs):
    def __init__(
        self,
        client: Redis,
        clock: Clock,
        *,
        namespace: str = "vmta",
        sync_interval: float = SYNC_INTERVAL,
        window: float = WINDOW_SECONDS,
        min_attempts: int = MIN_ATTEMPTS,
    ) -> None:
        super().__init__(window=window, min_attempts=min_attempts)
        self._redis = client
        self._clock = clock
        self.namespace = namespace
        self.sync_interval = sync_interval
        self._start_script = client.register_script(START)
        self._end_script = client.register_script(END)
        self._read_script = client.register_script(READ)
        # One Redis conversation at a time, in the order asked: a backoff begun and then
        # ended by hand reaches Redis in that order.
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: asyncio.Task[None] | None = None
        # Bumped at each change made here: a read that began before it must not undo it.
        self._changes: dict[ThrottleKey, int] = {}
        self._unpublished: set[ThrottleKey] = set()  # begun here, not yet in Redis
        self._unwithdrawn: set[ThrottleKey] = set()  # ended here, maybe still in Redis
        self._last_complaint: float | None = None

    @classmethod
    def from_url(
        cls, url: str, clock: Clock, *, namespace: str = "vmta", **kwargs: Any
    ) -> RedisBackoffs:
        client = Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT
        )
        return cls(client, clock, namespace=namespace, **kwargs)

    # ---- Redis names -----------------------------------------------------------------

    @property
    def index_key(self) -> str:
        return f"{self.namespace}:backoffs"

    @property
    def _prefix(self) -> str:
        return f"{self.namespace}:backoff:"

    def record_key(self, key: ThrottleKey) -> str:
        return self._prefix + member_of(key)

    # ---- what changed here -------------------------------------------------------------

    def _on_start(self, key: ThrottleKey, entry: _Entry) -> None:
        self._changed(key)
        self._unwithdrawn.discard(key)
        self._unpublished.add(key)
        self._spawn(self._publish(key))

    def _on_end(self, key: ThrottleKey) -> None:
        self._changed(key)
        self._unpublished.discard(key)
        self._unwithdrawn.add(key)
        self._spawn(self._withdraw(key))

    async def end_everywhere(self, key: ThrottleKey) -> bool:
        here = self._end_here(key)
        self._changed(key)
        self._unpublished.discard(key)
        self._unwithdrawn.add(key)
        elsewhere = await self._withdraw(key)
        return here or elsewhere

    def _changed(self, key: ThrottleKey) -> None:
        self._changes[key] = self._changes.get(key, 0) + 1

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        try:
            task = asyncio.get_running_loop().create_task(work)
        except RuntimeError:  # no event loop (a synchronous caller): the next sync does it
            work.close()
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(self, key: ThrottleKey) -> None:
        async with self._lock:
            await self._publish_locked(key)

    async def _publish_locked(self, key: ThrottleKey) -> None:
        entry = self._entries.get(key)
        now = self._clock.now()
        backoff = None if entry is None else entry.tracker.current(now)
        if entry is None or backoff is None:
            self._unpublished.discard(key)
            return  # over already
        text = encode(backoff, entry.program or entry.tracker.program, entry.origin)
        ttl_ms = max(1, math.ceil((backoff.ends_at - now) * 1000))
        try:
            stored = await self._start_script(
                keys=[self.index_key, self.record_key(key)],
                args=[text, ttl_ms, member_of(key), repr(now)],
            )
        except (RedisError, OSError) as exc:
            self._complain("writing a backoff", exc)
            return
        self._unpublished.discard(key)
        stored_text = as_text(stored)
        if stored_text != text:  # another node decided first: its backoff is the one
            self._apply(key, stored_text, now)

    async def _withdraw(self, key: ThrottleKey) -> bool:
        async with self._lock:
            return await self._withdraw_locked(key)

    async def _withdraw_locked(self, key: ThrottleKey) -> bool:
        if key not in self._unwithdrawn:
            return False  # done already, or begun again here since
        try:
            gone = await self._end_script(
                keys=[self.index_key, self.record_key(key)], args=[member_of(key)]
            )
        except (RedisError, OSError) as exc:
            self._complain("ending a backoff", exc)
            return False  # the next sync tries again, before it reads
        self._unwithdrawn.discard(key)
        return bool(gone)

    # ---- what changed elsewhere ------------------------------------------------------

    async def refresh(self) -> None:
        """Tell Redis what it missed, then take the cluster's backoffs as this node's."""
        async with self._lock:
            for key in list(self._unwithdrawn):
                await self._withdraw_locked(key)
            for key in list(self._unpublished):
                await self._publish_locked(key)
            before = dict(self._changes)
            try:
                found = await self._read_script(keys=[self.index_key], args=[self._prefix])
            except (RedisError, OSError) as exc:
                self._complain("reading backoffs", exc)
                return
            now = self._clock.now()
            shared: set[ThrottleKey] = set()
            for raw_member, raw_value in zip(found[::2], found[1::2], strict=True):
                found_key = key_of(as_text(raw_member))
                if found_key is None or found_key in self._unwithdrawn:
                    continue  # not vmta's, or ended here and Redis not told yet
                if self._changes.get(found_key) != before.get(found_key):
                    shared.add(found_key)  # changed here while reading: the change stands
                    continue
                if self._apply(found_key, as_text(raw_value), now):
                    shared.add(found_key)
            for key, entry in self._entries.items():
                untouched = self._changes.get(key) == before.get(key)
                if key in shared or key in self._unpublished or not untouched:
                    continue
                if entry.tracker.current(now) is not None:
                    entry.tracker.end()
                    log.info("throttle %s: backoff ended on another node", "/".join(key))

    def _apply(self, key: ThrottleKey, text: str, now: float) -> bool:
        """Be in the shared backoff ``text`` for ``key``; False when it is not one in
        force (unreadable, or its time is up by this node's clock)."""
        decoded = decode(text)
        if decoded is None:
            return False
        backoff, program, origin = decoded
        if backoff.ends_at <= now:
            return False
        entry = self._entry(key, None)
        if entry.origin is None:
            entry.origin = origin  # this node's configuration, once it has one, wins
        if entry.tracker.current(now) != backoff:
            log.info("throttle %s: in backoff, decided on another node", "/".join(key))
        entry.tracker.adopt(backoff, program)
        return True

    # ---- life cycle --------------------------------------------------------------------

    def start(self) -> None:
        if self._runner is None:
            self._runner = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:  # a bug must not end sharing for good
                log.exception("reading the shared backoff state failed")
            await self._clock.sleep(self.sync_interval)

    async def settle(self) -> None:
        """Wait until what this node changed has been written to Redis (for tests and a
        clean stop)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
            self._runner = None
        await self.settle()
        await self._redis.aclose()

    def _complain(self, what: str, exc: BaseException) -> None:
        now = time.monotonic()
        if self._last_complaint is not None and now - self._last_complaint < COMPLAINT_INTERVAL:
            return
        self._last_complaint = now
        log.warning(
            "Redis unreachable for the shared backoff state (%s: %s); this node goes on"
            " with what it knows",
            what,
            exc,
        )
