"""What an SMTP transaction means for each of its recipients (RFC 5321 §4.2.1, §4.5.3.1).

2xx is success, 4xx is a temporary failure (defer and retry), 5xx is permanent (fail).
A recipient is delivered only when both its RCPT and the end-of-data reply are 2xx.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum


class Verdict(StrEnum):
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    FAILED = "failed"


@dataclass(frozen=True)
class ReplyLine:
    """A reply as the delivery engine needs it: code and its text for the record."""

    code: int
    text: str
    # Where the attempt ended and how, in MailerQ's result vocabulary
    # (vmta.domain.reports.mailerq_result): ``stage`` (connect, ehlo, rcptto, message, dns, ...)
    # and ``ended`` (error, timeout, lost, invalid; None: error, or accepted for a 2xx
    # after the final dot). Not part of the reply's identity.
    stage: str | None = field(default=None, compare=False)
    ended: str | None = field(default=None, compare=False)

    def verdict(self) -> Verdict:
        if 200 <= self.code < 300:
            return Verdict.DELIVERED
        if 500 <= self.code < 600:
            return Verdict.FAILED
        return Verdict.DEFERRED  # 4xx, and anything malformed: never give up on nonsense

    def __str__(self) -> str:
        return f"{self.code} {self.text}".strip()


def recipient_verdicts(
    mail: ReplyLine, rcpts: Sequence[ReplyLine], data: ReplyLine | None
) -> list[tuple[Verdict, ReplyLine]]:
    """One verdict per recipient, with the reply that decided it."""
    if mail.verdict() is not Verdict.DELIVERED:
        return [(mail.verdict(), mail) for _ in rcpts]
    results: list[tuple[Verdict, ReplyLine]] = []
    for rcpt in rcpts:
        if rcpt.verdict() is not Verdict.DELIVERED:
            results.append((rcpt.verdict(), rcpt))
        elif data is None:
            results.append((Verdict.DEFERRED, ReplyLine(451, "no reply to DATA", stage="data")))
        else:
            results.append((data.verdict(), data))
    return results
