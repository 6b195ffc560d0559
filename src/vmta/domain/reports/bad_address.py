"""When a recipient counts as a bad address: GreenArrow's ``bounce_bad_address`` rule.

A recipient's bounces are counted per recipient and list (``listid``; mail without one
is its own list). The address is bad once it has ``hard`` hard bounces (``h``), or
``soft`` soft bounces (``s``) within the last ``days`` days. Policy refusals (``o``)
count for neither: they say the sender was refused, not that the address is wrong.
The event is given once per recipient and list; with ``suppress`` the address also
joins the suppression list. Both thresholds, the window and ``suppress`` are settings
(VMTA_BAD_ADDRESS_HARD, _SOFT, _DAYS, VMTA_SUPPRESS_BAD_ADDRESSES).

Pure: standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass

from vmta.domain.reports.bounce_classification import HARD, SOFT

DAY = 86_400.0

# The suppression a bad address gets (MailerQ's /v1/suppressions entry): a permanent
# refusal with RFC 3463 X.1.1, so that a later message to it fails at once as "bad
# destination mailbox" and is classified hard again.
SUPPRESSION_CODE = 550
SUPPRESSION_STATUS = "5.1.1"


@dataclass(frozen=True)
class BadAddressPolicy:
    hard: int = 1
    soft: int = 3
    days: float = 7.0
    suppress: bool = True

    def counts(self, bounce_type: str) -> bool:
        """Whether a bounce of this type counts towards a threshold."""
        return bounce_type in (HARD, SOFT)

    def window_start(self, now: float) -> float:
        """The oldest time a soft bounce still counts at ``now``."""
        return now - self.days * DAY

    def crossed(self, hard_bounces: int, soft_bounces_in_window: int) -> bool:
        """Whether these counts make the address bad (a threshold of 0 is off)."""
        return (self.hard > 0 and hard_bounces >= self.hard) or (
            self.soft > 0 and soft_bounces_in_window >= self.soft
        )

    def reason(self, hard_bounces: int, soft_bounces_in_window: int) -> str:
        """Why the address is bad, for the suppression's description."""
        if self.hard > 0 and hard_bounces >= self.hard:
            return f"bad address: {hard_bounces} hard bounce(s)"
        days = f"{self.days:g}"
        return f"bad address: {soft_bounces_in_window} soft bounces within {days} days"


def list_key(listid: str | None) -> str:
    """The list a bounce counts for: its ``listid`` as GreenArrow reports it (lower
    case), ``""`` for mail without one."""
    return (listid or "").strip().lower()


def address_key(address: str) -> str:
    """A recipient as counted: ignoring case (as suppressions compare)."""
    return address.strip().lower()
