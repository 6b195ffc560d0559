"""One table that turns a failure's RFC 3463 enhanced status code into GreenArrow's
``bounce_type`` and vmta's integer ``bounce_code`` (docs/events.md, "Bounce
classification").

It serves every bounce alike: a refusal vmta saw in its own SMTP session (synchronous)
and a delivery status notification received later (asynchronous, RFC 3464 ``Status:``).

- ``h`` (hard) only for a bad address: X.1.0 (other address status), X.1.1 (bad
  destination mailbox), X.1.3 (bad mailbox syntax), X.1.6 (mailbox has moved).
- ``o`` (other) for a block or policy refusal: X.7.x (security or policy status). The
  address may be fine; the sender is what was refused.
- ``s`` (soft) for everything else, the bad destination system (X.1.2) included: a
  domain that is gone today may be back tomorrow, and one refusal must not cost a list
  every address of a domain.

Pure: standard library only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HARD = "h"
SOFT = "s"
OTHER = "o"
BOUNCE_TYPES = (HARD, SOFT, OTHER)

# bounce_code values: vmta's own integers, stable, documented in docs/events.md.
BAD_MAILBOX = 10
EXPIRED = 20
BAD_DOMAIN = 21
MAILBOX_FULL = 22
TOO_LARGE = 23
NETWORK = 24
PROTOCOL = 25
CONTENT = 26
OTHER_BOUNCE = 40
POLICY = 50
AUTHENTICATION = 51

_STATUS = re.compile(r"^([245])\.([0-9]{1,3})\.([0-9]{1,3})$")


@dataclass(frozen=True)
class BounceClass:
    bounce_type: str  # h, s, o
    bounce_code: int


# (subject, detail) -> class; detail None: any detail of that subject (RFC 3463 §3.1:
# X.<subject>.<detail>). Looked up with the exact pair first, then the subject's row.
_TABLE: dict[tuple[int, int | None], BounceClass] = {
    (1, 0): BounceClass(HARD, BAD_MAILBOX),
    (1, 1): BounceClass(HARD, BAD_MAILBOX),
    (1, 3): BounceClass(HARD, BAD_MAILBOX),
    (1, 6): BounceClass(HARD, BAD_MAILBOX),
    (1, 2): BounceClass(SOFT, BAD_DOMAIN),
    (4, 4): BounceClass(SOFT, BAD_DOMAIN),  # unable to route: no MX, no address
    (4, 7): BounceClass(SOFT, EXPIRED),  # delivery time expired
    (2, 2): BounceClass(SOFT, MAILBOX_FULL),
    (2, 3): BounceClass(SOFT, TOO_LARGE),  # message length exceeds administrative limit
    (3, 4): BounceClass(SOFT, TOO_LARGE),  # message too big for system
    (4, None): BounceClass(SOFT, NETWORK),
    (5, None): BounceClass(SOFT, PROTOCOL),
    (6, None): BounceClass(SOFT, CONTENT),
    (7, 0): BounceClass(OTHER, POLICY),
    (7, 1): BounceClass(OTHER, POLICY),  # delivery not authorized, message refused
    (7, 8): BounceClass(OTHER, AUTHENTICATION),  # RFC 4954: authentication credentials invalid
    (7, None): BounceClass(OTHER, POLICY),
}
_DEFAULT = BounceClass(SOFT, OTHER_BOUNCE)


def parse_status(status: str | None) -> tuple[int, int, int] | None:
    """(class, subject, detail) of an RFC 3463 status such as ``5.1.1``; None if it is
    not one."""
    match = _STATUS.match((status or "").strip())
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def classify(status: str | None, *, expired: bool = False) -> BounceClass:
    """The class of a failure with RFC 3463 ``status`` (``None`` or malformed: unknown).

    ``expired``: the message failed because its time in the queue ran out (vmta's queue
    lifetime, a message's own maxdelivertime), whatever the last reply was."""
    if expired:
        return BounceClass(SOFT, EXPIRED)
    parsed = parse_status(status)
    if parsed is None:
        return _DEFAULT
    _klass, subject, detail = parsed
    return _TABLE.get((subject, detail)) or _TABLE.get((subject, None)) or _DEFAULT


def table_rows() -> list[tuple[str, str, int]]:
    """The table as (status pattern, bounce_type, bounce_code) rows, for the docs and
    their test."""
    rows = []
    for (subject, detail), found in _TABLE.items():
        pattern = f"X.{subject}.{'x' if detail is None else detail}"
        rows.append((pattern, found.bounce_type, found.bounce_code))
    rows.append(("anything else", _DEFAULT.bounce_type, _DEFAULT.bounce_code))
    return rows
