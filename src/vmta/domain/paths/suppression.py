"""Suppressions (MailerQ REST API v1 ``/v1/suppressions``): recipients never tried.

An entry suppresses one address or a whole domain. Mail to a suppressed recipient fails at
once with the entry's code and text, and no connection is made. Values compare ignoring
case: domains are case-insensitive (RFC 5321 §2.4), and although a local part may in
theory be case-sensitive, no receiver treats ``Bob@`` and ``bob@`` as two people, and a
suppression that misses by case would defeat its purpose (a spam trap, an opt-out).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class SuppressionType(StrEnum):
    ADDRESS = "address"
    DOMAIN = "domain"


@dataclass(frozen=True)
class Suppression:
    value: str  # as given by the client
    type: SuppressionType
    code: int
    extended: str | None = None
    description: str | None = None

    @property
    def key(self) -> str:
        return suppression_key(self.value)

    def reply_text(self) -> str:
        parts = [p for p in (self.extended, self.description) if p]
        return " ".join(parts) or "recipient suppressed"


def suppression_key(value: str) -> str:
    return value.strip().lower().rstrip(".")


def _domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower().rstrip(".")


class SuppressionIndex:
    """Entries by key, built once: finding a recipient's entry is two dictionary look-ups
    whatever the number of entries (a walk of the list per recipient grew with it)."""

    def __init__(self, entries: Iterable[Suppression] = ()) -> None:
        self._addresses: dict[str, Suppression] = {}
        self._domains: dict[str, Suppression] = {}
        for entry in entries:
            table = self._addresses if entry.type is SuppressionType.ADDRESS else self._domains
            table.setdefault(entry.key, entry)  # the first one wins, as in a walk

    def __len__(self) -> int:
        return len(self._addresses) + len(self._domains)

    def find(self, address: str) -> Suppression | None:
        """The entry that suppresses ``address``: its own entry first, else its domain's."""
        return self._addresses.get(suppression_key(address)) or self._domains.get(
            _domain_of(address)
        )


def lookup_keys(address: str) -> tuple[str, str]:
    """The keys whose entries may suppress ``address``: its own and its domain's (for an
    indexed query of the store)."""
    return suppression_key(address), _domain_of(address)


def suppression_for(address: str, entries: Iterable[Suppression]) -> Suppression | None:
    """The entry of ``entries`` that suppresses ``address``: its own entry first, else its
    domain's."""
    return SuppressionIndex(entries).find(address)
