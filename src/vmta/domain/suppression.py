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


def suppression_for(address: str, entries: Iterable[Suppression]) -> Suppression | None:
    """The entry that suppresses ``address``: its own entry first, else its domain's."""
    wanted = suppression_key(address)
    domain = _domain_of(address)
    by_domain: Suppression | None = None
    for entry in entries:
        if entry.type is SuppressionType.ADDRESS and entry.key == wanted:
            return entry
        if entry.type is SuppressionType.DOMAIN and entry.key == domain and by_domain is None:
            by_domain = entry
    return by_domain
