"""The bounce classification of a received bounce: the same table as for the refusals
vmta sees in its own sessions (vmta.domain.delivery_event.bounce_classification), fed
the RFC 3463 status the report gave."""

from __future__ import annotations

from vmta.domain.delivery_event import bounce_classification
from vmta.domain.spool_records import FAILED, Outcome


def classify_status(status: str | None, text: str | None) -> tuple[str, int]:
    """(bounce_type, bounce_code) of a failure reported with ``status`` (e.g. 5.1.1).
    A bounce always reports a permanent failure, so the reply given to the table has
    class 5 whatever the status's own class."""
    code = status if status else "5.0.0"
    outcome = Outcome(
        recipient_id=0, message_id="", at=0.0, state=FAILED, reply=f"550 {code} {text or ''}"
    )
    return bounce_classification(outcome)
