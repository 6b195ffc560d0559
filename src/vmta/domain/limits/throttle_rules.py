"""Which throttling rule applies to a recipient domain (contract §2.6, §2.8).

An IP address VirtualMTA is throttled per destination: ``max_concurrent_connections`` and
``max_messages_per_hour`` count the connections and messages of one IP address to one
destination. Which limits apply, in this order:

1. the IP address's own rule with a domain pattern (``example.com``, ``[*.]example.com``,
   ``*.example.com``) matching the recipient domain, the most specific pattern winning;
2. the IP address's own rule with an ``mx:`` pattern matching one of the domain's MX
   host names, the most specific pattern winning (on a tie, the more preferred MX, then
   the earlier rule). The address's rules win over the template's for every domain they
   match, by name or by MX;
3. and 4. the same two steps with the template's rules;
5. the IP address's own ``default``, when set;
6. the template's ``default``; with no template and no IP default, no limit (0 = unlimited).

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

from vmta.domain.config.domain_pattern import DomainPattern, PatternKind, parse_domain_pattern
from vmta.domain.config.virtual_mta import Limits, Ref, ThrottleRule, ThrottlingTemplate

UNLIMITED = Limits(max_concurrent_connections=0, max_messages_per_hour=0)


IP_ADDRESS_RULE = "ip_address"
TEMPLATE_RULE = "throttling_template"


@dataclass(frozen=True)
class ThrottleMatch:
    """The limits for one destination, what they count (``key``, see the module text) and
    where they came from (``source``, for logs: ``rule 3: [*.]a.test``, ``IP default``,
    ``template default``, ``no throttling``). ``rule`` is the rule that matched (None: a
    default) and ``owner`` where it lives (``ip_address`` or ``throttling_template``;
    for a default, where the default came from, ``ip_address`` when none applies)."""

    limits: Limits
    key: tuple[str, str]
    source: str
    rule: ThrottleRule | None = None
    owner: str = IP_ADDRESS_RULE

    @property
    def program(self) -> Ref | None:
        """The throttle program (Dynamic Delivery) of the matched rule, if any."""
        return None if self.rule is None else self.rule.throttle_program


@dataclass(frozen=True)
class _Entry:
    pattern: DomainPattern
    limits: Limits
    label: str  # "rule <id>" or "rule #<position>", for ``source``
    rule: ThrottleRule
    owner: str


class ThrottleTable:
    """A template's rules parsed once; ``match`` is then cheap enough to call per delivery.

    Patterns that do not parse are skipped (the API refuses them, so they only come from
    a database edited by hand).
    """

    def __init__(
        self, template: ThrottlingTemplate | None, ip_rules: Sequence[ThrottleRule] = ()
    ) -> None:
        self.template = template
        # (domain entries, mx entries) of the IP address's rules, then of the template's.
        self._tiers: list[tuple[list[_Entry], list[_Entry]]] = [
            _entries(ip_rules, IP_ADDRESS_RULE),
            _entries(template.rules if template is not None else (), TEMPLATE_RULE),
        ]

    @property
    def has_mx_patterns(self) -> bool:
        """Whether ``match`` can use MX host names (if not, the caller need not find them)."""
        return any(mx for _, mx in self._tiers)

    def match(
        self, domain: str, mx_hosts: Sequence[str] = (), ip_default: Limits | None = None
    ) -> ThrottleMatch:
        """The limits for ``domain`` (whose MX host names, most preferred first, are
        ``mx_hosts``) on an IP address whose own default is ``ip_default``."""
        domain = domain.strip().lower().rstrip(".")
        hosts = [host.strip().lower().rstrip(".") for host in mx_hosts]
        for by_domain, by_mx in self._tiers:
            found = _best(by_domain, [domain])
            if found is not None:
                return _matched(found, "", domain)
            found = _best(by_mx, hosts)
            if found is not None:
                return _matched(found, "mx", domain)
        per_domain = ("domain", domain)
        if ip_default is not None:
            return ThrottleMatch(ip_default, per_domain, "IP default")
        if self.template is not None:
            return ThrottleMatch(
                self.template.default, per_domain, "template default", owner=TEMPLATE_RULE
            )
        return ThrottleMatch(UNLIMITED, per_domain, "no throttling")


def ip_throttle_key(source_ip: str, match: ThrottleMatch) -> tuple[str, ...]:
    """What one IP address counts together for one destination (see the module text):
    every IP address counts separately."""
    return ("ip", source_ip, *match.key)


def throttle_for(
    template: ThrottlingTemplate | None,
    ip_default: Limits | None,
    domain: str,
    mx_hosts: Sequence[str] = (),
    ip_rules: Sequence[ThrottleRule] = (),
) -> ThrottleMatch:
    """One-off form of ``ThrottleTable(template, ip_rules).match(domain, mx_hosts,
    ip_default)``."""
    return ThrottleTable(template, ip_rules).match(domain, mx_hosts, ip_default)


def _entries(rules: Sequence[ThrottleRule], owner: str) -> tuple[list[_Entry], list[_Entry]]:
    by_domain: list[_Entry] = []
    by_mx: list[_Entry] = []
    for position, rule in enumerate(rules):
        label = f"rule {rule.id}" if rule.id is not None else f"rule #{position}"
        if owner == IP_ADDRESS_RULE:
            label = "IP " + label
        for text in rule.domains:
            pattern = parse_domain_pattern(text, allow_mx=True)
            if isinstance(pattern, DomainPattern):
                entry = _Entry(pattern, rule.limits, label, rule, owner)
                (by_mx if pattern.mx else by_domain).append(entry)
    return by_domain, by_mx


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
    source = f"{entry.label}: {'mx:' if mx else ''}{text}"
    if mx:
        key = ("mx", text)
    elif entry.pattern.kind is PatternKind.EXACT:
        key = ("domain", domain)
    else:
        key = ("pattern", text)
    return ThrottleMatch(entry.limits, key, source, entry.rule, entry.owner)
