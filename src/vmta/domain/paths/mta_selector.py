"""What an ``X-GreenArrow-MtaID`` value (or ``X-Virtual-MTA``) names: an id or a name.

GreenArrow's rule, kept by vmta: a value that names no VirtualMTA means the default one.
So a value is read as an id only when it is plain ASCII decimal within the id range
(at most 2,147,483,647, the bound ids have on every database), and as a name only when it
could be a VirtualMTA's name. Anything else (``99999999999999999999``, a superscript
two, a full-width one, a NUL) names nothing: looking it up could only fail, and on
PostgreSQL an int8 overflow or a NUL in a query is an error, not an empty answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vmta.domain.config.names import virtual_mta_name_problems

MAX_ID = 2_147_483_647
_ASCII_DECIMAL = re.compile(r"[0-9]{1,10}", re.ASCII)


@dataclass(frozen=True)
class SelectorTarget:
    """At most one of ``id`` and ``name`` is set; neither: the default VirtualMTA."""

    id: int | None = None
    name: str | None = None

    @property
    def names_nothing(self) -> bool:
        return self.id is None and self.name is None


def selector_target(value: str) -> SelectorTarget:
    """What ``value`` (already unfolded and trimmed) may name."""
    if _ASCII_DECIMAL.fullmatch(value):
        number = int(value)
        return SelectorTarget(id=number) if 1 <= number <= MAX_ID else SelectorTarget()
    if virtual_mta_name_problems(value):
        # Not even a possible name (a digit string too long for an id lands here too:
        # names may not be integers).
        return SelectorTarget()
    return SelectorTarget(name=value)
