"""Domain patterns of routing rules and throttling templates (contract §2.7, §2.8).

``example.com`` matches exactly; ``[*.]example.com`` matches it and every subdomain;
``*.example.com`` matches subdomains only. Throttling templates add ``mx:<pattern>``, matched
against the host names of the recipient domain's MX records. Matching ignores case, and
the most specific pattern wins: an exact name beats a wildcard, and a longer suffix beats a
shorter one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

T = TypeVar("T")

_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")


class PatternKind(Enum):
    EXACT = "exact"
    SELF_AND_SUBDOMAINS = "self_and_subdomains"
    SUBDOMAINS = "subdomains"


@dataclass(frozen=True)
class DomainPattern:
    """A parsed pattern. ``text`` is what the user wrote, kept for output."""

    text: str
    kind: PatternKind
    suffix: str  # lower case, no leading dot
    mx: bool = False

    @property
    def key(self) -> str:
        """Identity used to refuse duplicates within one rule or template."""
        return self.text.lower()

    def matches(self, name: str) -> bool:
        name = name.lower().rstrip(".")
        if self.kind is PatternKind.EXACT:
            return name == self.suffix
        is_sub = name.endswith("." + self.suffix)
        if self.kind is PatternKind.SUBDOMAINS:
            return is_sub
        return is_sub or name == self.suffix

    def specificity(self) -> tuple[int, int]:
        """Sort key, larger is more specific: exact beats wildcard, then longer suffix."""
        rank = {
            PatternKind.EXACT: 2,
            PatternKind.SUBDOMAINS: 1,
            PatternKind.SELF_AND_SUBDOMAINS: 0,
        }[self.kind]
        return (rank, self.suffix.count(".") * 1000 + len(self.suffix))


def _domain_problem(domain: str) -> str | None:
    if not 1 <= len(domain) <= 253:
        return "must be a domain name of 1 to 253 characters"
    if not all(_LABEL.match(label) for label in domain.split(".")):
        return "must be a domain name of letters, digits and hyphens joined by dots"
    return None


def parse_domain_pattern(text: str, *, allow_mx: bool = False) -> DomainPattern | str:
    """Parse ``text`` into a pattern, or return one sentence saying why it is invalid."""
    raw = text.strip()
    mx = False
    if allow_mx and raw.lower().startswith("mx:"):
        mx = True
        raw = raw[3:].strip()
    lowered = raw.lower()
    if lowered.startswith("[*.]"):
        kind, suffix = PatternKind.SELF_AND_SUBDOMAINS, lowered[4:]
    elif lowered.startswith("*."):
        kind, suffix = PatternKind.SUBDOMAINS, lowered[2:]
    else:
        kind, suffix = PatternKind.EXACT, lowered
    problem = _domain_problem(suffix)
    if problem is not None:
        forms = "example.com, [*.]example.com or *.example.com"
        if allow_mx:
            forms += ", optionally after mx:"
        return f"{problem} ({forms})"
    return DomainPattern(text=text, kind=kind, suffix=suffix, mx=mx)


def most_specific(candidates: list[tuple[DomainPattern, T]], name: str) -> T | None:
    """The value whose pattern matches ``name`` most specifically, or None."""
    best: tuple[tuple[int, int], T] | None = None
    for pattern, value in candidates:
        if pattern.matches(name):
            spec = pattern.specificity()
            if best is None or spec > best[0]:
                best = (spec, value)
    return None if best is None else best[1]
