"""Suspending an external MTA whose proxy keeps failing (External MTAs issue).

When connections through one external MTA fail at the egress stage (proxy down, refusing,
timing out, answering garbage) several times in a row, its mail waits for a while instead
of burning attempts on a path that is known to be broken. A success clears the count.
Keyed by public_ip: the address receivers see, and the name operators use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class _State:
    failures: int = 0
    last_reason: str = ""
    suspended_until: float = 0.0


class EgressHealth:
    def __init__(self, *, threshold: int = 3, suspension: float = 60.0) -> None:
        self.threshold = threshold  # consecutive egress failures before a suspension
        self.suspension = suspension  # seconds
        self._states: dict[str, _State] = {}

    def failed(self, public_ip: str, reason: str, now: float) -> bool:
        """Count a failure; True when it starts a suspension."""
        state = self._states.setdefault(public_ip, _State())
        state.failures += 1
        state.last_reason = reason
        if state.failures >= self.threshold and state.suspended_until <= now:
            state.suspended_until = now + self.suspension
            return True
        return False

    def succeeded(self, public_ip: str) -> None:
        self._states.pop(public_ip, None)

    def suspended(self, public_ip: str, now: float) -> float | None:
        """Seconds left of a suspension, or None when mail may go."""
        state = self._states.get(public_ip)
        if state is None or state.suspended_until <= now:
            return None
        return state.suspended_until - now

    def report(self, now: float) -> list[dict[str, Any]]:
        return [
            {
                "public_ip": ip,
                "consecutive_failures": state.failures,
                "suspended_for": round(max(0.0, state.suspended_until - now), 1),
                "last_error": state.last_reason,
            }
            for ip, state in sorted(self._states.items())
            if state.failures
        ]
