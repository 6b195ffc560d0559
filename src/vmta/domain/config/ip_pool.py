"""IP pools (MailerQ REST API v1 ``/v1/pools``, ``/v1/poolips``): named sets of sending IPs.

A message that names a pool leaves from one of the pool's addresses at each attempt, read
when the attempt is made, so a change of members applies to the next attempt. An address
is in at most one pool: adding it to another moves it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NAME_MAX = 100
_NAME = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class IpPool:
    name: str
    description: str | None = None


def pool_name_problem(field: str, name: str) -> str | None:
    if len(name) > NAME_MAX:
        return f"{field} must be at most {NAME_MAX} characters long"
    if not _NAME.fullmatch(name):
        shown = name if len(name) <= 50 else name[:47] + "..."
        return f"{field} may hold only letters, digits, '-' and '_', not {shown!r}"
    return None
