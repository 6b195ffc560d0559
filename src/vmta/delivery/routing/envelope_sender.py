"""What the engine asks of VERP (vmta.feedback.verp_signer): whether a message's envelope
sender is rewritten per recipient, and the sender one recipient's transaction uses."""

from __future__ import annotations

from typing import Protocol

from vmta.domain.attempts.spool_records import Job


class EnvelopeSenders(Protocol):
    async def per_recipient(self, mail_from: str) -> bool:
        """True: each recipient goes in a transaction of its own (its own sender)."""
        ...

    async def sender_for(self, job: Job) -> str:
        """The envelope sender of ``job``'s transaction."""
        ...
