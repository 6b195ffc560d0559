"""The backoff state of every throttle of this node (Dynamic Delivery).

One ``BackoffTracker`` per throttle key (``EgressPath.throttle_key``), created when the
first outcome through it is observed. The delivery engine feeds it and reads it:

- after each recorded attempt outcome: ``observe(path.throttle_key, path.throttle_program,
  outcome.outcome_label, outcome.at, origin=path.throttle_origin)``;
- wherever it reads a path's limits (its connection limiter and message pacer):
  ``limits(path.throttle_key, path.limits, clock.now())`` instead of ``path.limits``.

The Throttles API reads it (``in_backoff``, ``of_ip_address``, ``state``) and ends
backoff by hand (``end_backoff``). State is per node and lost on restart: a throttle
that was in backoff starts again at its normal limits and goes back into backoff if the
destination still refuses mail.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

from vmta.domain.throttle_backoff import (
    MIN_ATTEMPTS,
    WINDOW_SECONDS,
    AttemptOutcome,
    Backoff,
    BackoffTracker,
)
from vmta.domain.throttle_program import ThrottleProgram
from vmta.domain.throttle_rules import TEMPLATE_RULE, ThrottleMatch
from vmta.domain.virtual_mta import IpAddress, Limits, ThrottlingTemplate

ThrottleKey = tuple[str, ...]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ThrottleOrigin:
    """Which IP address and which rule a throttle belongs to, as the Throttles API shows
    it. ``rule_id`` None: the IP address's or the template's default limits."""

    ip_address_id: int
    ip_address_name: str
    rule_type: str  # "ip_address" or "throttling_template": where the rule lives
    rule_id: int | None
    owner_id: int | None  # the IP address or template holding the rule
    owner_name: str | None
    domains: tuple[str, ...]  # the rule's patterns, or the one destination domain
    normal: Limits


@dataclass(frozen=True)
class ThrottleState:
    """One throttle as the API shows it: ``id`` is this node's number for the throttle
    (stable while vmta runs); ``limits`` are the ones in force."""

    id: int
    key: ThrottleKey
    origin: ThrottleOrigin | None
    backoff: Backoff | None
    limits: Limits | None


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
        self._ids = itertools.count(1)

    def _entry(self, key: ThrottleKey, origin: ThrottleOrigin | None) -> _Entry:
        entry = self._entries.get(key)
        if entry is None:
            tracker = BackoffTracker(window=self.window, min_attempts=self.min_attempts)
            entry = self._entries[key] = _Entry(next(self._ids), tracker)
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
        entry = self._entries.get(key)
        ended = entry is not None and entry.tracker.end()
        if ended:
            log.info("throttle %s taken out of backoff by hand", "/".join(key))
        return ended

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


def throttle_origin(
    ip: IpAddress, template: ThrottlingTemplate | None, match: ThrottleMatch, domain: str
) -> ThrottleOrigin | None:
    """Which IP address and which rule a throttle belongs to (the Throttles API's
    ``ip_address`` and ``throttling_rule``). A default's ``domains`` is the one
    destination domain it counts. None for an address that is no stored IP address
    VirtualMTA (a MailerQ sending IP without one): the Throttles API cannot name it."""
    if ip.id is None:
        return None
    in_template = match.owner == TEMPLATE_RULE and template is not None
    owner_id = template.id if in_template and template is not None else ip.id
    owner_name = template.name if in_template and template is not None else ip.name
    return ThrottleOrigin(
        ip_address_id=ip.id,
        ip_address_name=ip.name,
        rule_type=match.owner,
        rule_id=None if match.rule is None else match.rule.id,
        owner_id=owner_id,
        owner_name=owner_name,
        domains=tuple(match.rule.domains) if match.rule is not None else (domain,),
        normal=match.limits,
    )
