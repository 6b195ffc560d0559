"""What a message received at a bounce or spam complaint mailbox says: the parser's
result, stored as JSON with the report and published on the ``reports`` queue."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

BOUNCE = "bounce"  # a permanent failure (RFC 3464 Action: failed, or a known format)
NOTICE = "notice"  # a DSN that reports no failure (delayed, relayed, delivered): no event
COMPLAINT = "complaint"  # ARF (RFC 5965) or Microsoft JMRP
AUTO_REPLY = "auto_reply"  # RFC 3834 or a vacation reply: no event
UNKNOWN = "unknown"  # nothing recognised


@dataclass(frozen=True)
class RecipientFailure:
    """One failed recipient of a bounce (RFC 3464 §2.3 fields where there were any)."""

    final_recipient: str | None
    status: str | None = None  # RFC 3463, e.g. 5.1.1
    diagnostic: str | None = None  # Diagnostic-Code's text, or the text that said it
    original_recipient: str | None = None
    remote_mta: str | None = None


@dataclass(frozen=True)
class ParsedReport:
    kind: str
    source: str  # dsn, flufl, arf, jmrp, auto_submitted, vacation, none
    failures: tuple[RecipientFailure, ...] = ()
    # Per-message fields of a DSN: RFC 3461's ENVID, or the queue id vmta's own DSNs carry.
    envelope_id: str | None = None
    vmta_queue_id: str | None = None
    reporting_mta: str | None = None
    # The returned or reported message's headers.
    original_message_id: str | None = None
    original_return_path: str | None = None
    # ARF Original-Rcpt-To, or JMRP's X-HmXmrOriginalRecipient.
    original_rcpt_to: str | None = None
    feedback_type: str | None = None
    user_agent: str | None = None
    subject: str | None = None
    actions: tuple[str, ...] = field(default=())  # every DSN Action seen

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["failures"] = [asdict(f) for f in self.failures]
        out["actions"] = list(self.actions)
        return out
