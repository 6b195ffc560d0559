"""Throttling template documents: request bodies to records and records to responses
(contract §2.8)."""

from __future__ import annotations

from typing import Any

from vmta.api.greenarrow.fields import Fields, JsonObject
from vmta.api.greenarrow.throttle_rule_document import parse_limits, parse_rules, render_rules
from vmta.domain.config.names import template_name_problems
from vmta.domain.config.virtual_mta import ThrottlingTemplate

FIELDS = ("id", "name", "rules", "default", "throttle_program")


def parse(doc: JsonObject) -> ThrottlingTemplate:
    """A complete template from a (merged) document, or ValidationFailed listing every
    broken rule. The template's ``id`` is ignored; a rule's ``id`` is kept (the handler
    has checked that it names one of the template's rules, see row_ids)."""
    f = Fields()
    f.known(doc, "", FIELDS)
    name = f.name(doc, rules=template_name_problems)
    if doc.get("throttle_program") is not None:
        # Programs belong to rules (rules[].throttle_program); a template-wide one is not
        # a field GreenArrow documents, so only the null some clients send is accepted.
        f.problem(
            "throttle_program",
            "must be null; give each rule its own throttle_program (rules[].throttle_program)",
        )
    rules = parse_rules(f, doc)
    default = parse_limits(f, f.hash(doc, "default", ""), "default")
    f.check()
    assert name is not None and default is not None
    return ThrottlingTemplate(name=name, default=default, rules=rules)


def render(template: ThrottlingTemplate) -> dict[str, Any]:
    """The full record, exactly as GET returns it."""
    return {
        "id": template.id,
        "name": template.name,
        "rules": render_rules(template.rules),
        "default": {
            "max_concurrent_connections": template.default.max_concurrent_connections,
            "max_messages_per_hour": template.default.max_messages_per_hour,
        },
    }
