"""Routing rule documents: request bodies to records and records to responses
(contract §2.7).

A rule is a ``default`` distribution plus ``domain_overrides``, each an override of the
distribution for some recipient domains. A distribution is a randomization type and the
VirtualMTAs to deliver through, weighted by ``portion_of_mail``.
"""

from __future__ import annotations

from typing import Any

from vmta.api.greenarrow.fields import Fields, JsonObject, kind_of
from vmta.api.greenarrow.references import ref_out
from vmta.domain.config.domain_pattern import parse_domain_pattern
from vmta.domain.config.names import virtual_mta_name_problems
from vmta.domain.config.virtual_mta import (
    DeliverThrough,
    Distribution,
    DomainOverride,
    RandomizationType,
    RoutingRule,
)

FIELDS = ("id", "name", "default", "domain_overrides")
DISTRIBUTION_FIELDS = ("randomization_type", "deliver_through")
OVERRIDE_FIELDS = ("id", "domains", *DISTRIBUTION_FIELDS)
ENTRY_FIELDS = ("virtual_mta", "portion_of_mail")
# ``default`` is a hash and merges key by key on PUT; ``domain_overrides`` and every
# ``deliver_through`` are arrays and are replaced whole, so no key needs to be atomic.
ATOMIC: tuple[str, ...] = ()
_RANDOMIZATION_TYPES = ", ".join(t.value for t in RandomizationType)


def strip_read_only(doc: JsonObject) -> JsonObject:
    """Drop what a request may not set: the rule's ``id``. The ids of domain overrides
    are handled by ``row_ids``: ignored on create, kept on PUT when they name a row."""
    return {k: v for k, v in doc.items() if k != "id"}


def parse(doc: JsonObject) -> RoutingRule:
    """A complete routing rule from a (merged) document, or ValidationFailed listing every
    broken rule. References are left for the store to resolve."""
    f = Fields()
    f.known(doc, "", FIELDS)
    name = f.name(doc, rules=virtual_mta_name_problems)
    default = None
    default_doc = f.hash(doc, "default", "")
    if default_doc is not None:
        f.known(default_doc, "default", DISTRIBUTION_FIELDS)
        default = _distribution(f, default_doc, "default")
    overrides: list[DomainOverride] = []
    override_docs = f.array(doc, "domain_overrides", "", required=False)
    seen: dict[str, str] = {}  # pattern key -> path of its first use
    for i, item in enumerate(override_docs or []):
        override = _override(f, item, f"domain_overrides[{i}]", seen)
        if override is not None:
            overrides.append(override)
    f.check()
    assert name is not None and default is not None
    return RoutingRule(name=name, default=default, domain_overrides=overrides)


def _override(f: Fields, item: Any, path: str, seen: dict[str, str]) -> DomainOverride | None:
    if not isinstance(item, dict):
        f.problem(path, f"must be a hash, not {kind_of(item)}")
        return None
    f.known(item, path, OVERRIDE_FIELDS)
    domains = _domains(f, item, path, seen)
    distribution = _distribution(f, item, path)
    # An id is present only when it names a stored override (checked by row_ids).
    override_id = item.get("id")
    if isinstance(override_id, bool) or not isinstance(override_id, int):
        override_id = None
    if domains is None or distribution is None:
        return None
    return DomainOverride(domains=domains, distribution=distribution, id=override_id)


def _domains(f: Fields, item: JsonObject, path: str, seen: dict[str, str]) -> list[str] | None:
    values = f.array(item, "domains", path)
    if values is None:
        return None
    full = f"{path}.domains"
    if not values:
        f.problem(full, "must list at least one domain pattern")
        return None
    domains: list[str] = []
    for j, value in enumerate(values):
        where = f"{full}[{j}]"
        if not isinstance(value, str):
            f.problem(where, f"must be a string, not {kind_of(value)}")
            continue
        if value != value.strip():
            f.problem(where, "must not have leading or trailing whitespace")
            continue
        pattern = parse_domain_pattern(value)
        if isinstance(pattern, str):
            f.problem(where, pattern)
            continue
        first = seen.get(pattern.key)
        if first is not None:
            f.problem(
                where,
                f"'{value}' is already listed as {first}; domains are unique ignoring case"
                " within a routing rule",
            )
            continue
        seen[pattern.key] = where
        domains.append(value)
    return domains if len(domains) == len(values) else None


def _distribution(f: Fields, doc: JsonObject, path: str) -> Distribution | None:
    randomization = _randomization_type(f, doc, path)
    entries = f.array(doc, "deliver_through", path)
    if entries is None:
        return None
    full = f"{path}.deliver_through"
    if not entries:
        f.problem(full, "must list at least one VirtualMTA")
        return None
    deliver_through: list[DeliverThrough] = []
    for i, entry in enumerate(entries):
        where = f"{full}[{i}]"
        if not isinstance(entry, dict):
            f.problem(where, f"must be a hash, not {kind_of(entry)}")
            continue
        f.known(entry, where, ENTRY_FIELDS)
        ref = f.ref(entry, "virtual_mta", where, required=True, nullable=False)
        portion = f.positive_number(entry, "portion_of_mail", where)
        if ref is not None and portion is not None:
            deliver_through.append(DeliverThrough(virtual_mta=ref, portion_of_mail=portion))
    if randomization is None or len(deliver_through) != len(entries):
        return None
    return Distribution(randomization_type=randomization, deliver_through=deliver_through)


def _randomization_type(f: Fields, doc: JsonObject, path: str) -> RandomizationType | None:
    def rule(text: str) -> list[str]:
        if text in {t.value for t in RandomizationType}:
            return []
        return [f"must be one of {_RANDOMIZATION_TYPES}"]

    value = f.string(doc, "randomization_type", path, rules=rule)
    return None if value is None else RandomizationType(value)


def render(rule: RoutingRule) -> dict[str, Any]:
    """The full record, exactly as GET returns it."""
    return {
        "id": rule.id,
        "name": rule.name,
        "default": _render_distribution(rule.default),
        "domain_overrides": [
            {"id": o.id, "domains": list(o.domains), **_render_distribution(o.distribution)}
            for o in rule.domain_overrides
        ],
    }


def _render_distribution(dist: Distribution) -> dict[str, Any]:
    return {
        "randomization_type": dist.randomization_type.value,
        "deliver_through": [
            {"virtual_mta": ref_out(e.virtual_mta), "portion_of_mail": float(e.portion_of_mail)}
            for e in dist.deliver_through
        ],
    }
