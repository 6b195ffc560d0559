"""What the delivery engine needs from the spool, as an interface (the store implements it,
through ``vmta.delivery.engine.spool_gateway``). Everything here is asynchronous: the engine runs
on the event loop and the spool's work happens on its own threads."""

from __future__ import annotations

from typing import Protocol

from vmta.domain.attempts.spool_records import Job, NewMessage, Outcome


class Spool(Protocol):
    async def accept(self, message: NewMessage, now: float, *, claim: bool = True) -> list[Job]:
        """Store a message durably. With ``claim`` its recipients are leased to this node
        and returned as jobs (the fast path); without, they wait for any node's poll."""
        ...

    async def record(self, outcome: Outcome) -> None:
        """Store one outcome (many callers' outcomes share one commit). An outcome for a
        recipient that no longer exists (its message was deleted) is not an error."""
        ...

    async def claim_due(self, now: float, limit: int, lease_until: float) -> list[Job]: ...

    async def renew_leases(self, lease_until: float) -> int: ...

    async def release_own_leases(self, now: float) -> int: ...

    async def purge_finished(self, before: float, limit: int) -> int: ...

    async def body(self, message_id: str) -> bytes | None:
        """The message as stored, in wire form (domain/message/wire_form.py); None once it has
        been deleted."""
        ...
