"""Incoming email domains and their mailboxes (GreenArrow's Incoming Email Domains): the
rules their fields follow and the snapshot the inbound listener and VERP read.

Pure: standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

EMAIL_STATUSES = ("normal", "defer", "disabled")
BOUNCE = "bounce"
SPAM_COMPLAINT = "spam_complaint"
FORWARDING = "forwarding"
MAILBOX_KINDS = (BOUNCE, SPAM_COMPLAINT, FORWARDING)
DOMAIN_MAX = 200
LOCALPART_MAX = 64  # RFC 5321 §4.5.3.1.1
MAX_FORWARD_TO = 100

# GreenArrow's rule: dot-separated strings of letters, digits and dashes; no dash next to
# a dot (nor at either end).
_DOMAIN = re.compile(r"[A-Za-z0-9]+(?:-+[A-Za-z0-9]+)*(?:\.[A-Za-z0-9]+(?:-+[A-Za-z0-9]+)*)*")
# RFC 5322 §3.2.3 dot-atom text: what a local part may hold unquoted.
_LOCALPART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


def domain_problems(domain: str) -> list[str]:
    if not 1 <= len(domain) <= DOMAIN_MAX:
        return [f"must be from 1 to {DOMAIN_MAX} characters in length"]
    if not _DOMAIN.fullmatch(domain):
        return [
            "must be a domain name: dot-separated strings of only letters, numbers and"
            " dashes, with no dash next to a dot"
        ]
    return []


def localpart_problems(localpart: str) -> list[str]:
    if not 1 <= len(localpart) <= LOCALPART_MAX:
        return [f"must be from 1 to {LOCALPART_MAX} characters in length"]
    if not _LOCALPART.fullmatch(localpart):
        return ["must be a plain local part (letters, digits and !#$%&'*+/=?^_`{|}~.-)"]
    return []


def address_problems(address: str) -> list[str]:
    local, at, domain = address.rpartition("@")
    if not at or localpart_problems(local) or domain_problems(domain):
        return ["must be an email address such as user@example.com"]
    return []


@dataclass(frozen=True)
class Mailbox:
    id: int
    domain_id: int
    kind: str  # bounce, spam_complaint, forwarding
    localpart: str
    forward_to: tuple[str, ...] = ()
    is_wildcard: bool = False


@dataclass(frozen=True)
class IncomingDomain:
    id: int
    domain: str
    email_status: str


@dataclass(frozen=True)
class MailboxDirectory:
    """Every incoming domain and mailbox, as read at one moment: what RCPT and VERP check."""

    domains: Mapping[str, IncomingDomain] = field(default_factory=dict)  # by lower-case
    mailboxes: Mapping[tuple[int, str], Mailbox] = field(default_factory=dict)  # (domain
    # id, lower-cased local part)
    wildcards: Mapping[int, Mailbox] = field(default_factory=dict)  # forwarding, by domain

    @classmethod
    def of(cls, domains: Sequence[IncomingDomain], boxes: Sequence[Mailbox]) -> MailboxDirectory:
        wildcards = {b.domain_id: b for b in boxes if b.kind == FORWARDING and b.is_wildcard}
        return cls(
            domains={d.domain.lower(): d for d in domains},
            mailboxes={(b.domain_id, b.localpart.lower()): b for b in boxes},
            wildcards=wildcards,
        )

    def bounce_mailbox(self, address: str) -> str | None:
        """``address`` as stored when it is a bounce mailbox's plain address."""
        local, _, domain = address.rpartition("@")
        found = self.domains.get(domain.lower())
        if found is None or not local:
            return None
        box = self.mailboxes.get((found.id, local.lower()))
        if box is None or box.kind != BOUNCE:
            return None
        return f"{box.localpart}@{found.domain}"
