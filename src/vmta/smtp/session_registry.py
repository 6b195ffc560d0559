"""The injection listener's live sessions: caps at connect, stress-dependent idle
timeouts, and an orderly goodbye on shutdown.

Caps. Sessions overall and per client address are bounded; a connection over either cap
is answered ``421 4.7.0`` (RFC 5321 §3.8, RFC 3463 X.7.0) and closed before anything
else, so 300 slowloris sessions cannot hold every slot.

Caps and stress count the node's sessions: with ``VMTA_WORKERS`` > 1 the counts are
shared by the processes (``session_counts``), so the caps hold for the node as a whole.

Stress. When the sessions reach ``stress_fraction`` of the overall cap, every session's
idle timeout becomes ``stress_timeout`` instead of ``timeout``: a session that sits idle
then makes room for one that works, as Postfix's stress-dependent ``smtpd_timeout`` does
(``${stress?10}${stress:300}s``): sessions already idle when the threshold is crossed
get the short timeout from then on. The body of a DATA in progress keeps the normal
timeout (a large message on a slow link is work, not idling). Below the threshold the
normal timeout applies again from each session's next command.

Shutdown (RFC 5321 §3.8). ``drain`` stops nothing itself; the caller has already stopped
accepting. Sessions between transactions get ``421 4.3.2`` and are closed at once; a
session whose DATA is in progress may finish it (its client gets its 250, or a refusal)
and gets the 421 right after, until ``grace`` seconds have passed; then every session
still open gets the 421 and is closed. A client cut there got no 250, so it still owns
its message and sends it again: nothing is lost.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import Protocol

from vmta.smtp.session_counts import TOO_MANY, TOO_MANY_FROM_CLIENT, SharedSessionCounts

STRESS_FRACTION = 0.8
STRESS_CHECK = 1.0  # seconds between looks at the node's count (shared counts only)


@dataclass(frozen=True)
class SessionCaps:
    max_sessions: int = 1000
    max_per_client: int = 100
    timeout: float = 300.0  # RFC 5321 §4.5.3.2.7: the server timeout is at least 5 minutes
    stress_timeout: float = 10.0
    stress_fraction: float = STRESS_FRACTION


class Session(Protocol):
    client: str

    def shutdown_requested(self) -> None:
        """Say 421 and close now, or right after the DATA in progress."""

    def close_now(self) -> None:
        """Say 421 and close, whatever is in progress."""

    def stress_began(self) -> None:
        """Re-arm the idle timer, which now gives the stress timeout."""


class SessionRegistry:
    def __init__(
        self,
        caps: SessionCaps,
        hostname: str,
        shared: SharedSessionCounts | None = None,
        *,
        stress_check: float = STRESS_CHECK,
    ) -> None:
        """``shared``: the node's counts, shared with the other worker processes
        (smtp/session_counts.py); without it the counts are this process's own."""
        self.caps = caps
        self.hostname = hostname
        self.shared = shared
        self._stress_check = stress_check
        self._watcher: asyncio.Task[None] | None = None
        self._sessions: set[Session] = set()
        self._per_client: Counter[str] = Counter()
        self._empty = asyncio.Event()
        self._empty.set()
        self._force = asyncio.Event()
        self._stressed = False
        self.stopping = False

    @property
    def count(self) -> int:
        return len(self._sessions)

    def admit(self, session: Session) -> str | None:
        """Register ``session``; or, over a cap (or stopping), the reply that refuses it."""
        if self.stopping:
            return self.goodbye
        if self.shared is not None:
            over = self.shared.admit(
                session.client, self.caps.max_sessions, self.caps.max_per_client
            )
        elif len(self._sessions) >= self.caps.max_sessions:
            over = TOO_MANY
        elif self._per_client[session.client] >= self.caps.max_per_client:
            over = TOO_MANY_FROM_CLIENT
        else:
            over = None
        if over == TOO_MANY:
            return f"421 4.7.0 {self.hostname} Too many connections, try again later"
        if over == TOO_MANY_FROM_CLIENT:
            return f"421 4.7.0 {self.hostname} Too many connections from your address"
        self._sessions.add(session)
        self._per_client[session.client] += 1
        self._empty.clear()
        self._notice_stress(session)
        return None

    def _notice_stress(self, newcomer: Session | None = None) -> None:
        if not self._stressed and self._over_threshold():
            # Only on the crossing: re-arming on every new connection would keep pushing
            # an idle session's deadline back.
            self._stressed = True
            for other in list(self._sessions):
                if other is not newcomer:
                    other.stress_began()
        elif self._stressed and not self._over_threshold():
            self._stressed = False

    def start(self) -> None:
        """With shared counts, watch for the node crossing the stress threshold through
        the sessions of other processes too (this process's sessions idle meanwhile
        would not notice it before their next command)."""
        if self.shared is not None and self._watcher is None:
            self._watcher = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        while not self.stopping:
            await asyncio.sleep(self._stress_check)
            self._notice_stress()

    def release(self, session: Session) -> None:
        if session not in self._sessions:
            return
        self._sessions.discard(session)
        if self.shared is not None:
            self.shared.release(session.client)
        self._per_client[session.client] -= 1
        if self._per_client[session.client] <= 0:
            del self._per_client[session.client]
        if not self._sessions:
            self._empty.set()
        if self._stressed and not self._over_threshold():
            self._stressed = False

    def _over_threshold(self) -> bool:
        count = self.shared.total() if self.shared is not None else len(self._sessions)
        return count >= self.caps.stress_fraction * self.caps.max_sessions

    def idle_timeout(self) -> float:
        """The idle timeout that applies now (see the module's docstring)."""
        return self.caps.stress_timeout if self._over_threshold() else self.caps.timeout

    @property
    def goodbye(self) -> str:
        return f"421 4.3.2 {self.hostname} Service shutting down, closing connection"

    def force(self) -> None:
        """Stop waiting for DATA in progress (a second stop signal)."""
        self._force.set()

    async def drain(self, grace: float) -> None:
        """Say goodbye to every session; DATA in progress gets ``grace`` seconds."""
        self.stopping = True
        if self._watcher is not None:
            self._watcher.cancel()
        for session in list(self._sessions):
            session.shutdown_requested()
        if self._sessions:
            empty = asyncio.ensure_future(self._empty.wait())
            forced = asyncio.ensure_future(self._force.wait())
            try:
                await asyncio.wait([empty, forced], timeout=grace, return_when="FIRST_COMPLETED")
            finally:
                empty.cancel()
                forced.cancel()
        for session in list(self._sessions):
            session.close_now()
