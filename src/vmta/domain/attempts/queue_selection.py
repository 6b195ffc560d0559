"""Which recipients of the spool a bulk action (retry, delete, hold, release) is about.

Every criterion given must hold (AND); at least one is required, so that an action on
"everything" is always asked for explicitly (``state=queued``). The same rules serve the
API (``/api/queue/{action}``) and the command line (``vmta queue ACTION``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from vmta.domain.errors import InvalidRequest

# A recipient's state as an operator sees it: "queued" is every recipient not yet final;
# within it "deferred" has been tried, "held" is held by an operator.
STATES = ("queued", "deferred", "held", "delivered", "failed")
ACTIONS = ("retry", "delete", "hold", "release")
CRITERIA = ("virtual_mta", "domain", "sender", "state", "older_than")
# waiting_reason of a held recipient (the spool's "why it is not sent now" column).
HELD_REASON = "held by an operator"
MAX_TEXT = 320  # an address is at most 254 octets (RFC 5321 §4.5.3.1.3); names are shorter
MAX_AGE = 10 * 365 * 86_400


@dataclass(frozen=True)
class QueueSelection:
    virtual_mta: str | None = None  # the VirtualMTA asked for or last used, by name
    domain: str | None = None  # the recipient's domain, case-insensitive
    sender: str | None = None  # the envelope sender, case-insensitive ("" is <>)
    state: str | None = None  # one of STATES
    older_than: float | None = None  # seconds since the message was received

    @property
    def empty(self) -> bool:
        return all(getattr(self, name) is None for name in CRITERIA)

    def describe(self) -> str:
        given = [f"{n}={getattr(self, n)!r}" for n in CRITERIA if getattr(self, n) is not None]
        return ", ".join(given) or "nothing"


def parse_selection(raw: Mapping[str, str]) -> QueueSelection:
    """A selection from text values (query parameters, command-line options); raises
    ``InvalidRequest`` naming the first bad one."""
    unknown = sorted(set(raw) - set(CRITERIA))
    if unknown:
        raise InvalidRequest(
            f"unknown parameter {unknown[0]!r}; a selection takes {', '.join(CRITERIA)}."
        )
    texts: dict[str, str | None] = {}
    for name in ("virtual_mta", "domain", "sender"):
        text = raw.get(name)
        if text is not None:
            if len(text) > MAX_TEXT or any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
                raise InvalidRequest(f"{name} must be at most {MAX_TEXT} printable characters.")
            text = text.strip()
            if name != "sender" and not text:
                raise InvalidRequest(f"{name} must not be empty.")
        texts[name] = text
    domain = texts["domain"]
    state = raw.get("state")
    if state is not None and state not in STATES:
        raise InvalidRequest(f"state must be one of {', '.join(STATES)}.")
    age = raw.get("older_than")
    if age is not None and not (
        age.isascii() and age.isdigit() and len(age) <= 10 and int(age) <= MAX_AGE
    ):
        raise InvalidRequest(f"older_than must be a number of seconds from 0 to {MAX_AGE}.")
    selection = QueueSelection(
        virtual_mta=texts["virtual_mta"],
        domain=domain.lower().lstrip("@") if domain is not None else None,
        sender=texts["sender"],
        state=state,
        older_than=float(age) if age is not None else None,
    )
    if selection.empty:
        raise InvalidRequest(
            f"give at least one of {', '.join(CRITERIA)} (state=queued selects every"
            " recipient not yet delivered or failed)."
        )
    return selection
