"""The backoff state of every throttle of this node (Dynamic Delivery).

One ``BackoffTracker`` per throttle key (``EgressPath.throttle_key``), created when the
first outcome through it is observed. The delivery engine feeds it and reads it:

- after each recorded attempt outcome: ``observe(path.throttle_key, path.throttle_program,
  outcome.outcome_label, outcome.at, origin=path.throttle_origin)``;
- wherever it reads a path's limits (its connection limiter and message pacer):
  ``limits(path.throttle_key, path.limits, clock.now())`` instead of ``path.limits``.

The Throttles API brings it up to date (``refresh``), reads it (``in_backoff``,
``of_ip_address``, ``state``) and ends backoff by hand (``end_everywhere``). This class
keeps the state of one node, lost on restart: a throttle that was in backoff starts again
at its normal limits and goes back into backoff if the destination still refuses mail.
With Redis the state is the cluster's (``vmta.delivery.throttles.redis_backoffs``, a subclass that
publishes what ``_on_start`` and ``_on_end`` report and applies what other nodes did).

A throttle's ``id`` is derived from its key (``throttle_id``), so that every node, and
every restart, gives one throttle the same id: a client paging through
``/throttles_in_backoff`` behind a load balancer sees one list.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from vmta.domain.config.bounds import MAX_INTEGER
from vmta.domain.config.virtual_mta import Limits
from vmta.domain.limits.throttle_backoff import (
    MIN_ATTEMPTS,
    WINDOW_SECONDS,
    AttemptOutcome,
    Backoff,
    BackoffTracker,
)
from vmta.domain.limits.throttle_identity import (
    ThrottleKey,
    ThrottleOrigin,
    ThrottleState,
    throttle_id,
)
from vmta.domain.limits.throttle_program import ThrottleProgram

log = logging.getLogger(__name__)


@dataclass
class _Entry:
    id: int
    tracker: BackoffTracker
    origin: ThrottleOrigin | None = None
    program: ThrottleProgram | None = None


class ThrottleBackoffs:
    def __init__(self, *, window: float = WINDOW_SECONDS, min_attempts: int = MIN_ATTEMPTS) -> None:
        self.window = window
        self.min_attempts = min_attempts
        self._entries: dict[ThrottleKey, _Entry] = {}
        self._taken: set[int] = set()  # ids in use here

    def _entry(self, key: ThrottleKey, origin: ThrottleOrigin | None) -> _Entry:
        entry = self._entries.get(key)
        if entry is None:
            tracker = BackoffTracker(window=self.window, min_attempts=self.min_attempts)
            number = throttle_id(key)
            while number in self._taken:  # a collision: about 1 in 10**6 at 50 throttles
                number = number % MAX_INTEGER + 1
            self._taken.add(number)
            entry = self._entries[key] = _Entry(number, tracker)
        if origin is not None:
            entry.origin = origin  # the newest configuration wins
        return entry

    def observe(
        self,
        key: ThrottleKey,
        program: ThrottleProgram | None,
        outcome: str,
        now: float,
        *,
        origin: ThrottleOrigin | None = None,
    ) -> Backoff | None:
        """Count one attempt outcome (``delivered``, ``deferred`` or ``failed``; anything
        else, such as a hold that made no attempt, is ignored). Returns the Backoff when
        this outcome started one."""
        try:
            kind = AttemptOutcome(outcome)
        except ValueError:
            return None
        if program is None and key not in self._entries:
            return None  # nothing to measure, and nothing to remember
        entry = self._entry(key, origin)
        entry.program = program
        started = entry.tracker.observe(program, kind, now)
        if started is not None and program is not None:
            self._on_start(key, entry)
            # The operator's notice (a program's ``notify`` address is not mailed).
            log.warning(
                "throttle %s is in backoff for %d s (throttle program '%s')",
                "/".join(key),
                program.return_after,
                program.name,
            )
        return started

    def limits(self, key: ThrottleKey, base: Limits, now: float) -> Limits:
        """The limits of ``key`` at ``now``: ``base``, or the reduced ones in backoff."""
        entry = self._entries.get(key)
        if entry is None:
            return base
        return entry.tracker.limits(entry.program, base, now)

    def end_backoff(self, key: ThrottleKey) -> bool:
        """Take ``key`` out of backoff now; False when it was not in backoff."""
        ended = self._end_here(key)
        if ended:
            self._on_end(key)
        return ended

    async def end_everywhere(self, key: ThrottleKey) -> bool:
        """``end_backoff`` on every node that shares this state (here: this node), done
        when the call returns; False when it was in backoff nowhere."""
        return self.end_backoff(key)

    async def refresh(self) -> None:
        """Bring this node's view up to date before the API answers from it (nothing to
        do for one node's own state)."""

    def start(self) -> None:
        """Start what keeps the state up to date (nothing for one node's own state)."""

    async def close(self) -> None:
        """Stop that, and let go of what the state lives in."""

    def _end_here(self, key: ThrottleKey) -> bool:
        entry = self._entries.get(key)
        ended = entry is not None and entry.tracker.end()
        if ended:
            log.info("throttle %s taken out of backoff by hand", "/".join(key))
        return ended

    # ---- for a shared registry: what changed here ------------------------------------

    def _on_start(self, key: ThrottleKey, entry: _Entry) -> None:
        """``key`` went into backoff on this node's evidence."""

    def _on_end(self, key: ThrottleKey) -> None:
        """``key``'s backoff was ended by hand on this node."""

    def state(
        self, key: ThrottleKey, now: float, origin: ThrottleOrigin | None = None
    ) -> ThrottleState:
        """The throttle ``key`` (created, not in backoff, if no mail went through it)."""
        return self._state(key, self._entry(key, origin), now)

    def in_backoff(self, now: float) -> list[ThrottleState]:
        """Every throttle in backoff at ``now``, by id."""
        found = [self._state(k, e, now) for k, e in self._entries.items()]
        return sorted((s for s in found if s.backoff is not None), key=lambda s: s.id)

    def of_ip_address(self, ip_address_id: int, now: float) -> list[ThrottleState]:
        """Every throttle of one IP address that this node knows, by id."""
        found = [
            self._state(k, e, now)
            for k, e in self._entries.items()
            if e.origin is not None and e.origin.ip_address_id == ip_address_id
        ]
        return sorted(found, key=lambda s: s.id)

    def _state(self, key: ThrottleKey, entry: _Entry, now: float) -> ThrottleState:
        backoff = entry.tracker.current(now)
        limits = None
        if entry.origin is not None:
            limits = entry.tracker.limits(entry.program, entry.origin.normal, now)
        return ThrottleState(entry.id, key, entry.origin, backoff, limits)
