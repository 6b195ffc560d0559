"""Throttling rules in request and response documents, one shape for a template's
``rules`` and an IP address's own ``rules``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vmta.api.greenarrow.fields import Fields, JsonObject
from vmta.api.greenarrow.references import ref_out
from vmta.domain.config.domain_pattern import DomainPattern, parse_domain_pattern
from vmta.domain.config.virtual_mta import Limits, ThrottleRule

RULE_FIELDS = (
    "id",
    "domains",
    "max_concurrent_connections",
    "max_messages_per_hour",
    "throttle_program",
)
LIMIT_FIELDS = ("max_concurrent_connections", "max_messages_per_hour")
MAX_RULES = 250


def parse_limits(
    f: Fields, obj: JsonObject | None, path: str, *, whole: bool = True
) -> Limits | None:
    """The two limits of ``obj``; ``whole`` when ``obj`` holds nothing else."""
    if obj is None:
        return None
    if whole:
        f.known(obj, path, LIMIT_FIELDS)
    max_conn = f.integer(obj, "max_concurrent_connections", path, minimum=0)
    max_msgs = f.integer(obj, "max_messages_per_hour", path, minimum=0)
    if max_conn is None or max_msgs is None:
        return None
    return Limits(max_conn, max_msgs)


def parse_rules(f: Fields, doc: JsonObject) -> list[ThrottleRule]:
    """The ``rules`` array of ``doc`` (default ``[]``). A rule's ``id`` is kept: the
    handler has checked that it names one of the record's rules (see row_ids)."""
    items = f.array(doc, "rules", "", required=False)
    if items is None:
        return []
    if len(items) > MAX_RULES:
        f.problem("rules", f"may hold at most {MAX_RULES} rules, not {len(items)}")
        return []
    rules: list[ThrottleRule] = []
    # Where each domain pattern was first seen, to refuse duplicates within the record.
    seen: dict[tuple[bool, str, str], str] = {}
    for i, item in enumerate(items):
        path = f"rules[{i}]"
        if not isinstance(item, dict):
            f.problem(path, "must be a hash")
            continue
        f.known(item, path, RULE_FIELDS)
        domains = _domains(f, item, path, seen)
        limits = parse_limits(f, item, path, whole=False)
        # null (the default) or a reference {id} / {name}; id wins.
        program = f.ref(item, "throttle_program", path)
        rule_id = item.get("id")
        if isinstance(rule_id, bool) or not isinstance(rule_id, int):
            rule_id = None
        if domains is not None and limits is not None:
            rules.append(
                ThrottleRule(domains=domains, limits=limits, id=rule_id, throttle_program=program)
            )
    return rules


def _domains(
    f: Fields,
    rule: JsonObject,
    path: str,
    seen: dict[tuple[bool, str, str], str],
) -> list[str] | None:
    values = f.array(rule, "domains", path)
    if values is None:
        return None
    if not values:
        f.problem(f"{path}.domains", "must list at least one domain")
        return None
    domains: list[str] = []
    for j, value in enumerate(values):
        where = f"{path}.domains[{j}]"
        if not isinstance(value, str):
            f.problem(where, "must be a string")
            continue
        if any(ch.isspace() for ch in value):
            # parse_domain_pattern would strip it, and the stored text would then differ
            # from the pattern that is matched.
            f.problem(where, "must not contain whitespace")
            continue
        pattern = parse_domain_pattern(value, allow_mx=True)
        if isinstance(pattern, str):
            f.problem(where, pattern)
            continue
        key = _identity(pattern)
        if key in seen:
            f.problem(where, f"repeats {seen[key]} ('{value}'); each domain may appear once")
            continue
        seen[key] = where
        domains.append(pattern.text)
    return domains if len(domains) == len(values) else None


def _identity(pattern: DomainPattern) -> tuple[bool, str, str]:
    """Two patterns name the same domain when they differ only in case."""
    return (pattern.mx, pattern.kind.value, pattern.suffix)


def render_rules(rules: Sequence[ThrottleRule]) -> list[dict[str, Any]]:
    return [
        {
            "id": rule.id,
            "domains": list(rule.domains),
            "max_concurrent_connections": rule.limits.max_concurrent_connections,
            "max_messages_per_hour": rule.limits.max_messages_per_hour,
            "throttle_program": ref_out(rule.throttle_program),
        }
        for rule in rules
    ]
