"""What the log says about mail going through (``VMTA_LOG_MESSAGES``).

``each`` (the default): one INFO line per accepted message (client, credential name,
size, Message-ID, queue id, recipients) and one per final outcome of each recipient
(delivered or failed, with the reply); ``minute``: one summary line a minute with the
counts instead, for busy nodes; ``off``: neither. Deferrals are attempts, not outcomes:
they are in delivery.log and counted in the summary, never logged one by one here.
Never a secret: the credential's name, never its secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from vmta.domain.attempts.spool_records import DELIVERED, FAILED, Job, Outcome
from vmta.domain.message.message_id_field import message_id_of

log = logging.getLogger("vmta.messages")

SUMMARY_SECONDS = 60.0

__all__ = ["ActivityLog", "message_id_of"]


@dataclass
class _Counts:
    accepted: int = 0
    bytes: int = 0
    delivered: int = 0
    failed: int = 0
    deferred: int = 0

    def any(self) -> bool:
        return bool(self.accepted or self.delivered or self.failed or self.deferred)


class ActivityLog:
    def __init__(self, mode: str = "each", *, every: float = SUMMARY_SECONDS) -> None:
        self.mode = mode
        self.every = every
        self._counts = _Counts()
        self._task: asyncio.Task[None] | None = None

    def accepted(
        self,
        queue_id: str,
        *,
        client: str | None,
        auth_name: str | None,
        size: int,
        data: bytes,
        recipients: int,
    ) -> None:
        """``size`` is the message's as it came; ``data`` is what is stored (its
        Message-ID is the same)."""
        if self.mode == "each":
            log.info(
                "accepted %s: client=%s credential=%s size=%d message_id=%s recipients=%d",
                queue_id,
                client or "-",
                auth_name or "-",
                size,
                message_id_of(data) or "-",
                recipients,
            )
        elif self.mode == "minute":
            self._counts.accepted += 1
            self._counts.bytes += size

    def outcome(self, job: Job, outcome: Outcome) -> None:
        if self.mode == "minute":
            if outcome.state == DELIVERED:
                self._counts.delivered += 1
            elif outcome.state == FAILED:
                self._counts.failed += 1
            elif outcome.attempted:
                self._counts.deferred += 1
            return
        if self.mode != "each" or outcome.state not in (DELIVERED, FAILED):
            return
        log.info(
            "%s %s: recipient=%s remote=%s reply=%s",
            outcome.state,
            job.message_id,
            job.address,
            outcome.remote_host or outcome.remote_ip or "-",
            outcome.reply or "-",
        )

    def summarize(self) -> None:
        """Log the counts since the last summary (nothing when nothing happened)."""
        counts, self._counts = self._counts, _Counts()
        if counts.any():
            log.info(
                "last %.0f s: accepted %d message(s) (%d bytes); delivered %d, failed %d,"
                " deferred %d recipient(s)",
                self.every,
                counts.accepted,
                counts.bytes,
                counts.delivered,
                counts.failed,
                counts.deferred,
            )

    def start(self) -> None:
        if self.mode == "minute" and self._task is None:
            self._task = asyncio.create_task(self._run(), name="activity-summary")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            self.summarize()  # what the last part-minute saw

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            self.summarize()
