"""The ready queue of one egress path: deliveries waiting for a connection of that path,
and what the path has learnt about its destination (ARCHITECTURE.md: "ready queue per
egress path").

The queue owns its state. What happens to it comes in as events, one method each, so that
its invariants hold in one place (KumoMTA's ready queue is the model):

- ``push``: a routed delivery arrives; ``put_back``: one comes back unattempted (its
  connection got no session, broke before the message, or met a fault of vmta's own).
  Either wakes one idle connection of the queue at once, if there is one.
- ``open_at`` / ``connecting``: may a new connection open now, and the dispatcher opens
  one with the first waiting delivery (a token of the connection rate is taken).
- ``opened``, ``failed``, ``closed``: a connection got its session, got none, ended.
- ``take``: an open connection waits (up to its idle time) for its next delivery.
- ``drain``: every waiting delivery leaves (deferred, released to the spool, failed).

A path that keeps failing is delayed as a whole: after ``failures_before_delay``
consecutive connection or session failures (each one over the path's whole host list),
every delivery waiting on it is deferred with one attempt each, and only one probing
connection is tried again after ``failure_delay``. This is KumoMTA's
``consecutive_connection_failures_before_delay``: a dead destination costs a few
connections per delay, not thousands a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from vmta.delivery.routing.router import Deliver
from vmta.domain.attempts.delivery_outcome import ReplyLine
from vmta.domain.attempts.spool_records import Job
from vmta.domain.clock import Clock
from vmta.domain.paths.egress_path import EgressPath

Peer = tuple[str | None, str | None]  # (IP address, host name) of who refused, if known


@dataclass
class Delivery:
    """One message for one path: all its recipients that go the same way."""

    jobs: list[Job]
    decision: Deliver

    @property
    def first(self) -> Job:
        return self.jobs[0]

    @property
    def throttle(self) -> str:
        """The throttle that counts this delivery's connection slot and pacing (its
        domain's, on a site's queue; the queue's own otherwise)."""
        return "/".join(self.decision.path.throttle_key)


class Carry(enum.Enum):
    """What a connection answers when offered the deliveries of one throttle."""

    TAKEN = "taken"  # it holds that throttle's connection slot and a pacing slot now
    BUSY = "busy"  # the throttle's connection slots are all held: try others, or wait
    PACED = "paced"  # the next pacing slot is far off (the dispatcher wakes the queue then)


# The connection's offer: may it carry a delivery of this throttle now?
Offer = Callable[[str], Awaitable[Carry]]


@dataclass(frozen=True)
class QueuePolicy:
    failures_before_delay: int = 3  # consecutive failures that delay a path
    failure_delay: float = 60.0  # seconds before a delayed path is probed again
    failure_memory: float = 3600.0  # a failing path is remembered this long after its last failure
    max_connection_rate: float = 10.0  # new connections a second (0: no cap)


@dataclass(frozen=True)
class Refusal:
    """What a delivery meets on a delayed path: the reply of the failures that delayed
    it, whether they were for good (a mail loop), and who refused, if anyone did."""

    reply: ReplyLine
    permanent: bool
    peer: Peer | None


class ConnectionRate:
    """At most ``per_second`` new connections a second, in a token bucket that holds one
    second's worth (a burst of that many, then steady)."""

    def __init__(self, per_second: float, now: float) -> None:
        self.per_second = per_second
        self._tokens = max(1.0, per_second)
        self._at = now

    def _refill(self, now: float) -> None:
        if self.per_second <= 0:
            return
        capacity = max(1.0, self.per_second)
        self._tokens = min(capacity, self._tokens + (now - self._at) * self.per_second)
        self._at = now

    def delay(self, now: float) -> float:
        """Seconds until a connection may be opened (0: now)."""
        if self.per_second <= 0:
            return 0.0
        self._refill(now)
        return 0.0 if self._tokens >= 1.0 else (1.0 - self._tokens) / self.per_second

    def take(self, now: float) -> None:
        if self.per_second > 0:
            self._refill(now)
            self._tokens -= 1.0


class ReadyQueue:
    """The queue of one path. On a site's path (``EgressPath.site_throttle``), deliveries
    of several throttles wait here, one line each (a domain with limits has its own
    throttle); the queue's connections carry each in turn, and count against
    ``throttle``, the site's own cap."""

    def __init__(
        self, path: EgressPath, policy: QueuePolicy, clock: Clock, stopping: asyncio.Event
    ) -> None:
        self._path = path  # the newest configuration of the path (limits, credentials, MX)
        self._policy = policy
        self._clock = clock
        self._stopping = stopping  # the engine's: idle connections end at once
        self._rate = ConnectionRate(policy.max_connection_rate, clock.now())
        # One line per throttle; each delivery with its turn (arrival order; one put back
        # comes before everything), so that lines are offered oldest first and none waits
        # behind another's backlog.
        self._waiting: dict[str, deque[tuple[int, Delivery]]] = {}
        self._turns = 0  # the last arrival's turn
        self._back_turns = 0  # the last put back's turn (negative: before any arrival)
        self._count = 0
        self._arrivals = 0  # pushes and puts back so far: a connection that was busy
        # offering sees whether anything came meanwhile
        # One (future, throttle it holds) per connection idle in ``take``, oldest first;
        # an arrival resolves one. A woken connection stays here until it runs, so that
        # it counts as taking what woke it (no new connection is opened for that).
        self._idle: deque[tuple[asyncio.Future[None], str | None]] = deque()
        self._connections = 0  # opening or open
        self._failures = 0  # consecutive
        self._last_failure_at = 0.0
        self._delayed_until = 0.0  # no connection before this
        self._refusal: Refusal | None = None  # set while delayed by failures
        self._peer: Peer | None = None  # who refused the last failed connection
        self._probing = False  # one connection tries a failing path again

    # ---- what the queue tells --------------------------------------------------------------

    @property
    def path(self) -> EgressPath:
        return self._path

    @property
    def throttle(self) -> str:
        """The throttle that counts this queue's connections (the site's own cap)."""
        return "/".join(self._path.site_throttle or self._path.throttle_key)

    @property
    def connections(self) -> int:
        """Connections opening or open."""
        return self._connections

    @property
    def failures(self) -> int:
        """Consecutive connection failures."""
        return self._failures

    @property
    def delayed_until(self) -> float:
        return self._delayed_until

    def __len__(self) -> int:
        """Deliveries waiting."""
        return self._count

    def count(self, throttle: str) -> int:
        """Deliveries of ``throttle`` waiting."""
        line = self._waiting.get(throttle)
        return len(line) if line else 0

    def lines(self) -> list[tuple[str, EgressPath]]:
        """The throttles with deliveries waiting, the line whose first delivery came first
        first (a session carries the site's domains in turn, not one domain while it has
        mail), each with the path of its first delivery (its newest limits)."""
        order = sorted(self._waiting, key=lambda t: self._waiting[t][0][0])
        return [(t, self._waiting[t][0][1].decision.path) for t in order]

    def wants_connection(self) -> bool:
        """More deliveries wait than idle connections could take."""
        return not self._stopping.is_set() and self._count > len(self._idle)

    def open_at(self, now: float) -> float | None:
        """When a new connection may open: ``now``, or later (the path is delayed, or
        the connection rate has no token left); None while the one probe of a failing
        path is out (its end tells)."""
        if self._delayed_until > now:
            return self._delayed_until
        if self._failing() and (self._probing or self._connections):
            return None
        return now + self._rate.delay(now)

    def refusal(self, now: float) -> Refusal | None:
        """What a delivery arriving now meets at once, without a connection: the failures
        of a delayed path; None when it may wait for a connection."""
        return self._refusal if self._delayed_until > now else None

    def forget_at(self, now: float) -> float | None:
        """When the queue may be dropped: nothing waits, nothing is open, it is not
        delayed, and if it has been failing, it has not failed for ``failure_memory``
        seconds (so that the retries of what it deferred meet a delayed path, not a fresh
        one that tries again). None while deliveries wait or connections are open."""
        if self._count or self._connections:
            return None
        at = self._delayed_until
        if self._failures:
            at = max(at, self._last_failure_at + self._policy.failure_memory)
        return max(at, now)

    def state(self, now: float) -> dict[str, Any]:
        return {
            "path": self._path.describe(),
            "waiting": self._count,
            "connections": self._connections,
            "throttle": self.throttle,
            "consecutive_failures": self._failures,
            "delayed_for": round(max(0.0, self._delayed_until - now), 1),
            "last_error": str(self._refusal.reply) if self._refusal else None,
        }

    # ---- what happens to it ----------------------------------------------------------------

    def update(self, path: EgressPath) -> None:
        """A delivery came with the path's newest configuration: it wins."""
        self._path = path

    def push(self, delivery: Delivery) -> None:
        """A delivery arrives: it waits at the tail of its throttle's line."""
        self._turns += 1
        self._waiting.setdefault(delivery.throttle, deque()).append((self._turns, delivery))
        self._arrived(delivery.throttle)

    def put_back(self, delivery: Delivery, *, pause: float = 0.0) -> None:
        """A delivery comes back unattempted: to the head of its line, where an idle
        connection takes it at once. ``pause``: no new connection opens for that long (a
        fault of vmta's own, or the spool is away)."""
        self._back_turns -= 1
        line = self._waiting.setdefault(delivery.throttle, deque())
        line.appendleft((self._back_turns, delivery))
        if pause:
            self.pause(pause)
        self._arrived(delivery.throttle)

    def pause(self, seconds: float) -> None:
        """No new connection for ``seconds`` (the throttle store or the spool is away)."""
        self._delayed_until = max(self._delayed_until, self._clock.now() + seconds)

    def may_carry(self, throttle: str) -> None:
        """What held ``throttle``'s line back may have passed (one of its connection
        slots came free elsewhere, its pacing slot came): one idle connection tries it."""
        if self.count(throttle):
            self._wake_one(throttle)

    def connecting(self, now: float, throttle: str) -> Delivery | None:
        """The dispatcher opens a connection (it holds the slots of the queue's and of
        ``throttle``): the first delivery of that line is its first message. None when
        an idle connection took it meanwhile (the dispatcher gives its slots back)."""
        if not self.count(throttle):
            return None
        self._rate.take(now)
        self._probing = self._failing()
        self._connections += 1
        return self._pop(throttle)

    def opened(self) -> None:
        """A connection got its session: the path works."""
        self._failures = 0
        self._probing = False
        self._delayed_until = 0.0
        self._refusal = None
        self._peer = None

    def failed(
        self, delivery: Delivery, reply: ReplyLine, *, permanent: bool, peer: Peer | None
    ) -> bool:
        """A connection got no session; its first ``delivery`` goes back unattempted.
        True when this failure delays the path (the threshold is reached, a probe failed,
        or the failure was for good): then what waits is to be drained and ended with
        ``refusal``."""
        now = self._clock.now()
        self.put_back(delivery)
        if peer is not None:
            self._peer = peer
        self._failures += 1
        self._last_failure_at = now
        self._probing = False
        threshold = 1 if permanent else self._policy.failures_before_delay
        if self._failures < threshold:
            return False
        self._delayed_until = now + self._policy.failure_delay
        self._refusal = Refusal(reply, permanent, self._peer)
        return True

    def closed(self) -> None:
        """A connection ended (whether or not it got a session)."""
        self._connections -= 1

    def drain(self, throttle: str | None = None) -> list[Delivery]:
        """Every waiting delivery (of ``throttle``, else of every line) leaves."""
        lines = [throttle] if throttle is not None else list(self._waiting)
        drained: list[Delivery] = []
        for name in lines:
            drained.extend(delivery for _, delivery in self._waiting.pop(name, ()))
        self._count -= len(drained)
        return drained

    async def take(
        self, idle_timeout: float, offer: Offer, held: str | None = None
    ) -> Delivery | None:
        """The next delivery for an open connection that holds the slot of ``held``:
        each line is offered to it (oldest first), and it takes the first delivery of
        the first line it can carry. When it can carry none, it waits up to
        ``idle_timeout`` for something to arrive (or come back, or a slot to come free).
        None: the engine stops, nothing came, or what waits waits for its pacing (the
        connection closes rather than stay idle: receivers close idle sessions)."""
        if self._stopping.is_set():
            return None
        # Made when the connection first finds nothing to carry (most calls do not).
        sleeper: asyncio.Future[None] | None = None
        stop: asyncio.Future[Any] | None = None
        try:
            while True:
                arrivals = self._arrivals
                paced = False
                for throttle, _ in self.lines():
                    if not self.count(throttle):
                        continue
                    carry = await offer(throttle)
                    if self._stopping.is_set():
                        return None
                    if carry is Carry.TAKEN:
                        delivery = self._pop(throttle)
                        if delivery is not None:
                            return delivery
                        held = throttle  # it holds the slot; the delivery went elsewhere
                    paced = paced or carry is Carry.PACED
                if paced:
                    return None
                if sleeper is None or stop is None:
                    # Idle: the wait is bounded by the clock's sleep, so that a manual
                    # clock in tests can end it as well.
                    sleeper = asyncio.ensure_future(self._clock.sleep(idle_timeout))
                    stop = asyncio.ensure_future(self._stopping.wait())
                elif sleeper.done() or stop.done():
                    return None
                if self._arrivals != arrivals:
                    continue  # something came while the lines were offered
                if not await self._idle_wait(sleeper, stop, held):
                    return None
        finally:
            if sleeper is not None:
                sleeper.cancel()
            if stop is not None:
                stop.cancel()

    async def _idle_wait(
        self, sleeper: asyncio.Future[None], stop: asyncio.Future[Any], held: str | None
    ) -> bool:
        """Wait, idle, until an arrival or a freed slot wakes this connection, its idle
        time ends or the engine stops. False: it is to close."""
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (woken, held)
        self._idle.append(entry)
        try:
            events: set[asyncio.Future[Any]] = {sleeper, stop, woken}
            await asyncio.wait(events, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            if woken.done() and not woken.cancelled():
                self._forward_wake(entry)  # cancelled after a wake: pass it on
            raise
        finally:
            with contextlib.suppress(ValueError):
                self._idle.remove(entry)
            woken.cancel()
        return not stop.done() and not (sleeper.done() and not self._count)

    # ---- invariants ------------------------------------------------------------------------

    def _failing(self) -> bool:
        return self._failures >= self._policy.failures_before_delay

    def _pop(self, throttle: str) -> Delivery | None:
        line = self._waiting.get(throttle)
        if not line:
            return None
        _, delivery = line.popleft()
        if not line:
            del self._waiting[throttle]
        self._count -= 1
        return delivery

    def _arrived(self, throttle: str) -> None:
        self._count += 1
        self._arrivals += 1
        self._wake_one(throttle)

    def _wake_one(self, throttle: str) -> None:
        """One arrival wakes one idle connection, not all of them: one that holds the
        delivery's throttle if any (it needs no other slot), else the longest idle. The
        others go on waiting for the rest of their idle time."""
        chosen = None
        for waiter, held in self._idle:
            if waiter.done():
                continue
            if held == throttle:
                chosen = waiter
                break
            chosen = chosen or waiter
        if chosen is not None:
            chosen.set_result(None)

    def _forward_wake(self, spent: tuple[asyncio.Future[None], str | None]) -> None:
        with contextlib.suppress(ValueError):
            self._idle.remove(spent)
        for throttle in list(self._waiting):
            self._wake_one(throttle)
            return
