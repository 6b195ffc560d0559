"""Which limits of a throttling template apply to a recipient domain (API.md §2.6, §2.8).

An IP address VirtualMTA is throttled per destination: ``max_concurrent_connections`` and
``max_messages_per_hour`` count the connections and messages of one IP address to one
destination. Which limits apply, in this order:

1. the template rule with a domain pattern (``example.com``, ``[*.]example.com``,
   ``*.example.com``) matching the recipient domain, the most specific pattern winning;
2. the template rule with an ``mx:`` pattern matching one of the domain's MX host names,
   the most specific pattern winning (on a tie, the more preferred MX, then the earlier
   rule);
3. the IP address's own ``default``, when set;
4. the template's ``default``; with no template and no IP default, no limit (0 = unlimited).

The throttle key
----------------
What is counted together is named by ``ThrottleMatch.key``, a pair of strings; the caller
prefixes it with the IP address (e.g. ``("ip", "4", *match.key)``) so every IP counts
separately. The pair is:

- ``("domain", <recipient domain>)`` when an exact pattern matched or nothing matched:
  each destination domain is counted on its own. (An exact pattern names one domain, so
  it counts the same set of messages as the fallback; adding or removing such a rule
  changes the limits, not the count.)
- ``("pattern", <canonical pattern>)`` when a wildcard matched: every domain the pattern
  covers shares one count, so ``[*.]a.test`` counts a.test and b.a.test together. The
  canonical pattern is lower case: ``[*.]a.test`` or ``*.a.test``.
- ``("mx", <canonical pattern>)`` when an ``mx:`` pattern matched: every domain whose
  MX hosts match it shares one count (``mx:*.mail.test`` groups all domains hosted there).
  The canonical pattern is written without the ``mx:`` prefix, as for ``pattern``.

Limits are per pattern, not per rule: a rule listing ``[*.]a.test`` and ``[*.]b.test``
gives each of the two its own count with the rule's limits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vmta.domain.domain_pattern import DomainPattern, PatternKind, parse_domain_pattern
from vmta.domain.virtual_mta import Limits, ThrottlingTemplate

UNLIMITED = Limits(max_concurrent_connections=0, max_messages_per_hour=0)


@dataclass(frozen=True)
class ThrottleMatch:
    """The limits for one destination, what they count (``key``, see the module text) and
    where they came from (``source``, for logs: ``rule 3: [*.]a.test``, ``IP default``,
    ``template default``, ``no throttling``)."""

    limits: Limits
    key: tuple[str, str]
    source: str


@dataclass(frozen=True)
class _Entry:
    pattern: DomainPattern
    limits: Limits
    rule: str  # "rule <id>" or "rule #<position>", for ``source``


class ThrottleTable:
    """A template's rules parsed once; ``match`` is then cheap enough to call per delivery.

    Patterns that do not parse are skipped (the API refuses them, so they only come from
    a database edited by hand).
    """

    def __init__(self, template: ThrottlingTemplate | None) -> None:
        self.template = template
        self._domain: list[_Entry] = []
        self._mx: list[_Entry] = []
        if template is None:
            return
        for position, rule in enumerate(template.rules):
            label = f"rule {rule.id}" if rule.id is not None else f"rule #{position}"
            for text in rule.domains:
                pattern = parse_domain_pattern(text, allow_mx=True)
                if isinstance(pattern, DomainPattern):
                    entry = _Entry(pattern, rule.limits, label)
                    (self._mx if pattern.mx else self._domain).append(entry)

    @property
    def has_mx_patterns(self) -> bool:
        """Whether ``match`` can use MX host names (if not, the caller need not find them)."""
        return bool(self._mx)

    def match(
        self, domain: str, mx_hosts: Sequence[str] = (), ip_default: Limits | None = None
    ) -> ThrottleMatch:
        """The limits for ``domain`` (whose MX host names, most preferred first, are
        ``mx_hosts``) on an IP address whose own default is ``ip_default``."""
        domain = domain.strip().lower().rstrip(".")
        by_domain = _best(self._domain, [domain])
        if by_domain is not None:
            return _matched(by_domain, "", domain)
        by_mx = _best(self._mx, [host.strip().lower().rstrip(".") for host in mx_hosts])
        if by_mx is not None:
            return _matched(by_mx, "mx", domain)
        per_domain = ("domain", domain)
        if ip_default is not None:
            return ThrottleMatch(ip_default, per_domain, "IP default")
        if self.template is not None:
            return ThrottleMatch(self.template.default, per_domain, "template default")
        return ThrottleMatch(UNLIMITED, per_domain, "no throttling")


def throttle_for(
    template: ThrottlingTemplate | None,
    ip_default: Limits | None,
    domain: str,
    mx_hosts: Sequence[str] = (),
) -> ThrottleMatch:
    """One-off form of ``ThrottleTable(template).match(domain, mx_hosts, ip_default)``."""
    return ThrottleTable(template).match(domain, mx_hosts, ip_default)


def canonical(pattern: DomainPattern) -> str:
    """The pattern in lower case, without ``mx:`` and surrounding spaces."""
    prefix = {
        PatternKind.EXACT: "",
        PatternKind.SELF_AND_SUBDOMAINS: "[*.]",
        PatternKind.SUBDOMAINS: "*.",
    }[pattern.kind]
    return prefix + pattern.suffix


def _best(entries: list[_Entry], names: list[str]) -> _Entry | None:
    # Names are tried in order and entries in order; only a strictly more specific match
    # replaces the one found, so ties go to the earlier name (more preferred MX), then
    # the earlier rule.
    best: tuple[tuple[int, int], _Entry] | None = None
    for name in names:
        for entry in entries:
            if entry.pattern.matches(name):
                spec = entry.pattern.specificity()
                if best is None or spec > best[0]:
                    best = (spec, entry)
    return None if best is None else best[1]


def _matched(entry: _Entry, mx: str, domain: str) -> ThrottleMatch:
    text = canonical(entry.pattern)
    source = f"{entry.rule}: {'mx:' if mx else ''}{text}"
    if mx:
        return ThrottleMatch(entry.limits, ("mx", text), source)
    if entry.pattern.kind is PatternKind.EXACT:
        return ThrottleMatch(entry.limits, ("domain", domain), source)
    return ThrottleMatch(entry.limits, ("pattern", text), source)
