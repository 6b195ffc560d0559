"""Throttling templates pick limits per destination (contract §2.6, §2.8): domain patterns,
then mx: patterns, then the IP's default, then the template's default."""

from __future__ import annotations

from vmta.domain.config.virtual_mta import Limits, ThrottleRule, ThrottlingTemplate
from vmta.domain.limits.throttle_rules import UNLIMITED, ThrottleTable, throttle_for

WIDE = Limits(1, 100)
EXACT = Limits(2, 200)
SUBS = Limits(3, 300)
MX_GOOGLE = Limits(4, 400)
MX_EXACT = Limits(5, 500)
TEMPLATE_DEFAULT = Limits(9, 900)
IP_DEFAULT = Limits(7, 700)

TEMPLATE = ThrottlingTemplate(
    name="t",
    default=TEMPLATE_DEFAULT,
    rules=[
        ThrottleRule(domains=["[*.]A.test"], limits=WIDE, id=1),
        ThrottleRule(domains=["exact.a.test", "solo.test"], limits=EXACT, id=2),
        ThrottleRule(domains=["*.deep.a.test"], limits=SUBS, id=3),
        ThrottleRule(domains=["mx:[*.]google.test"], limits=MX_GOOGLE, id=4),
        ThrottleRule(domains=["mx:aspmx.l.google.test"], limits=MX_EXACT, id=5),
    ],
)


def test_a_wildcard_counts_the_domain_and_its_subdomains_together() -> None:
    table = ThrottleTable(TEMPLATE)
    top = table.match("a.test")
    sub = table.match("b.A.test.")
    assert top.limits == sub.limits == WIDE
    assert top.key == sub.key == ("pattern", "[*.]a.test")
    assert top.source == "rule 1: [*.]a.test"


def test_the_most_specific_domain_pattern_wins() -> None:
    table = ThrottleTable(TEMPLATE)
    exact = table.match("EXACT.a.test")
    assert (exact.limits, exact.key) == (EXACT, ("domain", "exact.a.test"))
    deep = table.match("x.deep.a.test")
    assert (deep.limits, deep.key) == (SUBS, ("pattern", "*.deep.a.test"))
    # *.deep.a.test covers subdomains only: deep.a.test itself falls back to [*.]a.test.
    assert table.match("deep.a.test").limits == WIDE


def test_domain_patterns_beat_mx_patterns() -> None:
    found = ThrottleTable(TEMPLATE).match("solo.test", ["alt1.google.test"])
    assert (found.limits, found.key) == (EXACT, ("domain", "solo.test"))


def test_mx_patterns_group_domains_by_their_mx_hosts() -> None:
    table = ThrottleTable(TEMPLATE)
    assert table.has_mx_patterns
    one = table.match("one.example", ["alt2.google.test", "other.example"])
    two = table.match("two.example", ["Alt4.Google.Test."])
    assert one.limits == two.limits == MX_GOOGLE
    assert one.key == two.key == ("mx", "[*.]google.test")
    assert one.source == "rule 4: mx:[*.]google.test"


def test_the_most_specific_mx_pattern_wins_over_any_mx_host() -> None:
    found = ThrottleTable(TEMPLATE).match("x.example", ["alt1.google.test", "aspmx.l.google.test"])
    assert (found.limits, found.key) == (MX_EXACT, ("mx", "aspmx.l.google.test"))


def test_unmatched_domains_use_the_ip_default_counted_per_domain() -> None:
    table = ThrottleTable(TEMPLATE)
    first = table.match("b.example", ["mx.b.example"], ip_default=IP_DEFAULT)
    second = table.match("c.example", [], ip_default=IP_DEFAULT)
    assert first.limits == second.limits == IP_DEFAULT
    assert first.key == ("domain", "b.example")
    assert second.key == ("domain", "c.example")
    assert first.source == "IP default"


def test_without_an_ip_default_the_template_default_applies() -> None:
    found = throttle_for(TEMPLATE, None, "b.example", ["mx.b.example"])
    assert (found.limits, found.key, found.source) == (
        TEMPLATE_DEFAULT,
        ("domain", "b.example"),
        "template default",
    )


def test_no_template_means_the_ip_default_or_unlimited() -> None:
    assert throttle_for(None, IP_DEFAULT, "a.test").limits == IP_DEFAULT
    found = throttle_for(None, None, "A.test")
    assert (found.limits, found.key) == (UNLIMITED, ("domain", "a.test"))
    assert not ThrottleTable(None).has_mx_patterns


def test_an_ip_default_does_not_hide_a_matching_rule() -> None:
    assert throttle_for(TEMPLATE, IP_DEFAULT, "z.a.test").limits == WIDE


def test_ties_go_to_the_more_preferred_mx_then_the_earlier_rule() -> None:
    template = ThrottlingTemplate(
        name="ties",
        default=TEMPLATE_DEFAULT,
        rules=[
            ThrottleRule(domains=["mx:[*.]one.test"], limits=WIDE),
            ThrottleRule(domains=["mx:[*.]two.test"], limits=EXACT),
            ThrottleRule(domains=["mx:[*.]ONE.test "], limits=SUBS),
        ],
    )
    table = ThrottleTable(template)
    assert table.match("d.example", ["mx.two.test", "mx.one.test"]).limits == EXACT
    found = table.match("d.example", ["mx.one.test", "mx.two.test"])
    assert (found.limits, found.source) == (WIDE, "rule #0: mx:[*.]one.test")


IP_OWN = Limits(11, 1100)
IP_MX = Limits(12, 1200)
IP_RULES = [
    ThrottleRule(domains=["b.a.test"], limits=IP_OWN, id=21),
    ThrottleRule(domains=["mx:alt1.google.test"], limits=IP_MX, id=22),
]


def test_ip_address_rules_win_over_the_template_for_the_domains_they_match() -> None:
    table = ThrottleTable(TEMPLATE, IP_RULES)
    own = table.match("b.a.test")
    assert own.limits == IP_OWN and own.rule is IP_RULES[0] and own.owner == "ip_address"
    assert own.source == "IP rule 21: b.a.test"
    # Even a less specific MX match of the IP address beats the template's exact one.
    by_mx = table.match("c.test", ["aspmx.l.google.test", "alt1.google.test"])
    assert by_mx.limits == IP_MX and by_mx.key == ("mx", "alt1.google.test")
    # Other domains still get the template's rules, and the template's rule says so.
    other = table.match("x.a.test")
    assert other.limits == WIDE and other.owner == "throttling_template"
    assert other.rule is not None and other.rule.id == 1
    default = table.match("elsewhere.test")
    assert default.rule is None and default.owner == "throttling_template"


def test_ip_rules_without_a_template() -> None:
    table = ThrottleTable(None, IP_RULES)
    assert table.match("b.a.test").limits == IP_OWN
    assert table.match("a.test").limits == UNLIMITED
    assert table.has_mx_patterns
    assert throttle_for(None, IP_DEFAULT, "a.test", ip_rules=IP_RULES).limits == IP_DEFAULT
