"""Pauses and forced errors (MailerQ REST API v1 ``/v1/pauses`` and ``/v1/errors``): which
one applies to a delivery attempt.

A *matcher* names any combination of the sending side (``pool`` or ``mta``: a pool name or
a sending IP), the receiving side (``domain`` or ``ip``: a recipient domain or a remote MX
address) and a message ``tag``. An absent field means "any"; ``*`` is accepted as "any"
too, as in MailerQ's console. A pause holds matching mail without connecting; a forced
error ends the attempt with its code (4xx: deferred, 5xx: failed, 2xx: counted as
delivered, as MailerQ does) without connecting.

Matching is pure: the router gathers the facts of one attempt (``AttemptFacts``) and asks
``first_applicable`` which control, if any, stops it, and which remote addresses remain
usable when a control names only some of them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Generic, TypeVar

ANY = "*"
EXPIRE_FORMAT = "%Y-%m-%d %H:%M:%S"
MATCHER_FIELDS = ("pool", "mta", "domain", "ip", "tag")


def canonical_address(text: str) -> str | None:
    """The canonical text of an IPv4 or IPv6 address, or None when ``text`` is not one."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


@dataclass(frozen=True)
class Matcher:
    """What a pause or forced error applies to. Values are held canonical: IPs in
    canonical text, domains in lower case (``matcher`` builds them so)."""

    pool: str | None = None
    mta: str | None = None
    domain: str | None = None
    ip: str | None = None
    tag: str | None = None

    def key(self) -> str:
        """One text that identifies the matcher: POSTing the same fields again updates the
        record instead of adding a second one."""
        return "\x1f".join(value or "" for value in self.fields())

    def fields(self) -> tuple[str | None, ...]:
        return (self.pool, self.mta, self.domain, self.ip, self.tag)

    def as_dict(self) -> dict[str, str]:
        """The fields that are set, in MailerQ's order."""
        return {
            name: value
            for name, value in zip(MATCHER_FIELDS, self.fields(), strict=True)
            if value is not None
        }


def matcher(
    *,
    pool: str | None = None,
    mta: str | None = None,
    domain: str | None = None,
    ip: str | None = None,
    tag: str | None = None,
) -> Matcher:
    """A matcher with canonical values (the caller has checked each field)."""
    return Matcher(
        pool=pool,
        mta=_canonical_ip_or_any(mta),
        domain=None if domain is None else domain.lower().rstrip("."),
        ip=_canonical_ip_or_any(ip),
        tag=tag,
    )


def _canonical_ip_or_any(value: str | None) -> str | None:
    if value is None or value == ANY:
        return value
    return canonical_address(value) or value


@dataclass(frozen=True)
class Pause:
    matcher: Matcher
    cluster: bool = False
    expire: float | None = None  # seconds since the epoch, UTC; None: until deleted


@dataclass(frozen=True)
class ForcedError:
    matcher: Matcher
    code: int
    extended: str | None = None
    description: str | None = None
    cluster: bool = False
    expire: float | None = None

    def reply_text(self) -> str:
        """The text of the outcome: the enhanced code (RFC 3463) and the description, as
        the result of a real SMTP reply would read."""
        parts = [p for p in (self.extended, self.description) if p]
        return " ".join(parts) or "forced error"


@dataclass(frozen=True)
class AttemptFacts:
    """What one delivery attempt is: where it leaves from, what it is for."""

    source_ip: str | None  # the address receivers see (an external MTA's public_ip)
    domain: str  # recipient domain
    pools: frozenset[str] = field(default_factory=frozenset)  # pools the attempt counts under
    tags: frozenset[str] = field(default_factory=frozenset)


def _same_ip(wanted: str | None, actual: str | None) -> bool:
    if wanted is None or wanted == ANY:
        return True
    if actual is None:
        return False
    return (canonical_address(actual) or actual) == wanted


def sender_side_matches(m: Matcher, facts: AttemptFacts) -> bool:
    """Everything but the remote ``ip``: pool, mta, domain and tag."""
    if m.pool not in (None, ANY) and m.pool not in facts.pools:
        return False
    if not _same_ip(m.mta, facts.source_ip):
        return False
    if m.domain not in (None, ANY) and m.domain != facts.domain.lower().rstrip("."):
        return False
    return m.tag in (None, ANY) or m.tag in facts.tags


def is_active(expire: float | None, now: float) -> bool:
    return expire is None or expire > now


C = TypeVar("C", Pause, ForcedError)


@dataclass(frozen=True)
class Applicable(Generic[C]):
    """The control that stops the attempt (None: none does) and the remote addresses that
    remain usable, in their original order."""

    control: C | None
    remaining: tuple[str, ...]


def first_applicable(
    controls: Iterable[C], facts: AttemptFacts, remote_ips: Sequence[str], now: float
) -> Applicable[C]:
    """The first active control that stops this attempt.

    A control without ``ip`` stops the attempt as a whole. One with ``ip`` only takes that
    remote address out of the attempt: the attempt goes on to the other MX addresses, and
    is stopped (by the control that removed the last one) only when none remain. With
    ``remote_ips`` empty (a relay whose address is not known yet), ``ip`` controls do not
    apply.
    """
    remaining = list(remote_ips)
    last_removed: C | None = None
    for control in controls:
        if not is_active(control.expire, now) or not sender_side_matches(control.matcher, facts):
            continue
        wanted = control.matcher.ip
        if wanted is None or wanted == ANY:
            return Applicable(control, tuple(remaining))
        kept = [ip for ip in remaining if not _same_ip(wanted, ip)]
        if len(kept) < len(remaining):
            remaining = kept
            last_removed = control
    if remote_ips and not remaining and last_removed is not None:
        return Applicable(last_removed, ())
    return Applicable(None, tuple(remaining))


def soonest_expiry(controls: Iterable[Pause | ForcedError], now: float) -> float | None:
    """Seconds until the first active control with an expiry ends (None: none has)."""
    left = [c.expire - now for c in controls if c.expire is not None and c.expire > now]
    return min(left) if left else None


# ---- field rules (one clause per problem, as for every MailerQ record) ----------------


def exclusivity_problems(m: Matcher) -> list[str]:
    """``pool`` and ``mta`` name the sending side twice; ``domain`` and ``ip`` the
    receiving side: MailerQ refuses either pair (400)."""
    problems = []
    if m.pool is not None and m.mta is not None:
        problems.append("pool and mta cannot be given together")
    if m.domain is not None and m.ip is not None:
        problems.append("domain and ip cannot be given together")
    return problems


def parse_expire(text: str) -> float | None:
    """``YYYY-MM-DD HH:MM:SS`` in UTC (MailerQ's timestamp form) as epoch seconds; also
    accepted with a ``T`` between date and time, and as ISO 8601 with a UTC offset or
    ``Z`` (what the MailerQ .NET SDK writes: ``2026-12-07T10:00:00.0000000+01:00``).
    None when it is not such a time."""
    for form in (EXPIRE_FORMAT, "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.strptime(text.strip(), form).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    # Only a time that says its offset: a local time without one means nothing here.
    return parsed.timestamp() if parsed.tzinfo is not None else None


def format_expire(expire: float) -> str:
    return datetime.fromtimestamp(expire, UTC).strftime(EXPIRE_FORMAT)
