"""Delivery status notifications for failed recipients (RFC 3464), from the outcomes the
engine stored. They are queued like any message, with the null reverse-path."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from vmta.domain.attempts.engine_metrics import EngineMetrics, NoMetrics
from vmta.domain.attempts.spool_port import Spool
from vmta.domain.attempts.spool_records import Job, NewMessage, Outcome
from vmta.domain.clock import Clock
from vmta.domain.errors import TemporaryError
from vmta.domain.message.queue_id import new_queue_id
from vmta.domain.message.wire_form import unstuffed
from vmta.domain.reports.dsn import FailedRecipient, build_dsn, dsn_wanted
from vmta.resilience.outage_log import OutageLog

log = logging.getLogger(__name__)


def wants_bounce(job: Job) -> bool:
    """A bounce never causes another bounce, and the null sender gets none."""
    return not job.is_bounce and dsn_wanted(job.mail_from)


def compose_bounce(
    failed: Sequence[tuple[Job, Outcome]],
    *,
    remote: bool,
    reporting_mta: str,
    original: bytes,
    now: float,
) -> bytes:
    """The notification for the failed recipients of one message. ``remote``: a remote
    server's own words decided the failure; only those go in Diagnostic-Code, while what
    vmta concluded itself (null MX, expiry) is the reason."""
    first = failed[0][0]
    recipients = [
        FailedRecipient(
            address=job.address,
            reply=outcome.reply if remote else None,
            reason=None if remote else outcome.reply,
            status=None if remote else _enhanced(outcome.reply),
            remote_mta=outcome.remote_host if remote else None,
            last_attempt=outcome.at,
        )
        for job, outcome in failed
    ]
    return build_dsn(
        reporting_mta=reporting_mta,
        envelope_sender=first.mail_from,
        recipients=recipients,
        original=original,
        arrival=first.received_at,
        now=now,
        queue_id=first.message_id,
    )


def _enhanced(text: str | None) -> str | None:
    """The RFC 3463 code in a reply text such as "550 5.1.2 ..." (class 5 only)."""
    for word in (text or "").split()[:2]:
        parts = word.split(".")
        if len(parts) == 3 and parts[0] == "5" and all(p.isdigit() for p in parts):
            return word
    return None


class BounceMailer:
    """Queues the notification for a message's failed recipients: stored like any
    message, with the null reverse-path (RFC 5321 §4.5.5, so that it can never cause
    another bounce) and no selector (it goes the default way). It is stored unclaimed and
    the scheduler is nudged, so the notification takes the ordinary road out."""

    def __init__(
        self,
        spool: Spool,
        clock: Clock,
        *,
        hostname: str,
        max_lifetime: float,
        due_now: asyncio.Event,
        metrics: EngineMetrics | None = None,
    ) -> None:
        self._bounce_outage = OutageLog(log, "queueing bounces")
        self._metrics = metrics or NoMetrics()
        self._spool = spool
        self._clock = clock
        self._hostname = hostname
        self._max_lifetime = max_lifetime
        self._due_now = due_now

    async def notify(self, failed: Sequence[tuple[Job, Outcome]], *, remote: bool) -> None:
        first = failed[0][0]
        if not wants_bounce(first):
            return
        # The failure is stored already: a database that is away now must not lose its
        # bounce. Tried again, at most 30 s apart, until it is back (or vmta stops).
        pause = 0.5
        while True:
            try:
                await self._send(failed, remote=remote)
                return
            except TemporaryError as exc:
                self._bounce_outage.failed(
                    "could not queue the bounce for message %s; trying again in %.1f s",
                    exc,
                    first.message_id,
                    pause,
                )
            await self._clock.sleep(pause)
            pause = min(pause * 2, 30.0)

    async def _send(self, failed: Sequence[tuple[Job, Outcome]], *, remote: bool) -> None:
        first = failed[0][0]
        original = await self._spool.body(first.message_id)
        if original is None:  # deleted meanwhile: nothing to report on
            return
        now = self._clock.now()
        notification = compose_bounce(  # returns the original's header section, as sent
            failed,
            remote=remote,
            reporting_mta=self._hostname,
            original=unstuffed(original),
            now=now,
        )
        message = NewMessage(
            id=new_queue_id(now),
            received_at=now,
            expires_at=now + self._max_lifetime,
            mail_from="",
            recipients=[first.mail_from],
            body=notification,
            is_bounce=True,
        )
        try:
            await self._spool.accept(message, now, claim=False)
        except TemporaryError:
            raise  # tried again by notify
        except Exception:
            log.exception("could not queue the bounce for message %s", first.message_id)
            return
        self._bounce_outage.worked()
        self._metrics.accepted("bounce")
        for _job, outcome in failed:
            self._metrics.outcome("bounced", outcome.virtual_mta, outcome.source_ip or "default")
        self._due_now.set()
