"""Which pause, forced error or suppression applies to an attempt (pure rules)."""

from __future__ import annotations

from vmta.domain.paths.delivery_controls import (
    AttemptFacts,
    ForcedError,
    Pause,
    exclusivity_problems,
    first_applicable,
    format_expire,
    matcher,
    parse_expire,
    soonest_expiry,
)
from vmta.domain.paths.suppression import Suppression, SuppressionType, suppression_for

NOW = 1_000_000.0
FACTS = AttemptFacts(
    source_ip="198.51.100.7",
    domain="Gmail.com",
    pools=frozenset({"shared"}),
    tags=frozenset({"Campaign1"}),
)
MX = ("10.0.0.1", "10.0.0.2")


def test_an_empty_matcher_pauses_everything() -> None:
    pause = Pause(matcher())
    assert first_applicable([pause], FACTS, MX, NOW).control is pause


def test_each_field_must_match() -> None:
    matching = [
        matcher(domain="gmail.COM"),
        matcher(mta="198.51.100.7"),
        matcher(pool="shared"),
        matcher(tag="Campaign1"),
        matcher(mta="*", domain="*"),
        matcher(pool="shared", domain="gmail.com", tag="Campaign1"),
    ]
    for m in matching:
        assert first_applicable([Pause(m)], FACTS, MX, NOW).control is not None, m
    missing = [
        matcher(domain="hotmail.com"),
        matcher(mta="198.51.100.8"),
        matcher(pool="dedicated"),
        matcher(tag="Campaign2"),
        matcher(pool="shared", domain="yahoo.com"),
    ]
    for m in missing:
        assert first_applicable([Pause(m)], FACTS, MX, NOW).control is None, m


def test_ipv6_mta_matches_in_canonical_form() -> None:
    facts = AttemptFacts(source_ip="2001:DB8::0001", domain="a.test")
    assert first_applicable([Pause(matcher(mta="2001:db8:0::1"))], facts, (), NOW).control


def test_remote_ip_control_removes_only_that_address() -> None:
    pause = Pause(matcher(ip="10.0.0.1"))
    found = first_applicable([pause], FACTS, MX, NOW)
    assert found.control is None and found.remaining == ("10.0.0.2",)
    both = [pause, Pause(matcher(ip="10.0.0.2"))]
    found = first_applicable(both, FACTS, MX, NOW)
    assert found.control is both[1] and found.remaining == ()


def test_remote_ip_control_does_not_apply_without_known_addresses() -> None:
    assert first_applicable([Pause(matcher(ip="10.0.0.1"))], FACTS, (), NOW).control is None


def test_expired_controls_do_not_apply() -> None:
    gone = ForcedError(matcher(), code=550, expire=NOW)
    live = ForcedError(matcher(), code=421, expire=NOW + 5)
    assert first_applicable([gone], FACTS, MX, NOW).control is None
    assert first_applicable([gone, live], FACTS, MX, NOW).control is live
    assert soonest_expiry([gone, live, Pause(matcher())], NOW) == 5


def test_exclusive_pairs() -> None:
    assert exclusivity_problems(matcher(pool="p", mta="1.2.3.4")) == [
        "pool and mta cannot be given together"
    ]
    assert exclusivity_problems(matcher(domain="a.test", ip="1.2.3.4")) == [
        "domain and ip cannot be given together"
    ]
    assert exclusivity_problems(matcher(pool="p", ip="1.2.3.4")) == []


def test_forced_error_text() -> None:
    assert ForcedError(matcher(), 521, "5.2.1", "go away").reply_text() == "5.2.1 go away"
    assert ForcedError(matcher(), 421).reply_text() == "forced error"


def test_expire_round_trip() -> None:
    stamp = parse_expire("2030-03-18 00:00:00")
    assert stamp == 1_900_022_400.0
    assert stamp is not None and format_expire(stamp) == "2030-03-18 00:00:00"
    assert parse_expire("2030-03-18T00:00:00") == stamp
    assert parse_expire("18/03/2030") is None


def test_suppression_address_before_domain_ignoring_case() -> None:
    domain = Suppression("Example.COM", SuppressionType.DOMAIN, 550)
    address = Suppression("Trap@example.com", SuppressionType.ADDRESS, 551, "5.1.1", "Spamtrap")
    entries = [domain, address]
    assert suppression_for("trap@EXAMPLE.com", entries) is address
    assert suppression_for("other@example.com", entries) is domain
    assert suppression_for("x@sub.example.com", entries) is None
    assert suppression_for("x@example.org", entries) is None
    assert address.reply_text() == "5.1.1 Spamtrap"
