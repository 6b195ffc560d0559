"""Delivery status notifications for failed recipients (RFC 3464), from the outcomes the
engine stored. They are queued like any message, with the null reverse-path."""

from __future__ import annotations

from collections.abc import Sequence

from vmta.domain.dsn import FailedRecipient, build_dsn, dsn_wanted
from vmta.domain.spool_records import Job, Outcome


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
