"""IP address documents: request bodies to records and records to responses (contract §2.6)."""

from __future__ import annotations

from typing import Any

from vmta.api.greenarrow.fields import Fields, JsonObject
from vmta.api.greenarrow.references import redirect_out, ref_out
from vmta.api.greenarrow.throttle_rule_document import parse_rules, render_rules
from vmta.domain.config.names import ehlo_hostname_problems, is_ipv4, virtual_mta_name_problems
from vmta.domain.config.virtual_mta import IpAddress, Limits

FIELDS = (
    "id",
    "name",
    "ip",
    "hostname",
    "delivery_paused",
    "redirect",
    "throttling_template",
    "default",
    "rules",
)
# References are replaced whole on PUT (see fields.merge_patch).
ATOMIC = ("redirect", "throttling_template")
LIMIT_FIELDS = ("max_concurrent_connections", "max_messages_per_hour")


def _ipv4_rule(text: str) -> list[str]:
    return [] if is_ipv4(text) else ["must be a valid IPv4 address in dotted-decimal notation"]


def parse(doc: JsonObject) -> IpAddress:
    """A complete IP address from a (merged) document, or ValidationFailed listing every
    broken rule. Read-only fields (``id``, ``redirect.type``) are ignored."""
    f = Fields()
    f.known(doc, "", FIELDS)
    name = f.name(doc, rules=virtual_mta_name_problems)
    # The address need not be local: it may be reached through NAT or a proxy (contract §2.6).
    ip = f.string(doc, "ip", "", rules=_ipv4_rule)
    hostname = f.string(doc, "hostname", "", rules=ehlo_hostname_problems)
    paused = f.boolean(doc, "delivery_paused", "", default=False)
    redirect = f.ref(doc, "redirect", "")
    template_doc = doc.get("throttling_template")
    if isinstance(template_doc, dict) and "type" in template_doc:
        # Fields.ref tolerates a read-only ``type`` because redirects carry one; template
        # references never do, so it is an unknown field here.
        f.problem("throttling_template.type", "is not a known field")
    template = f.ref(doc, "throttling_template", "")
    default = None
    limits = f.hash(doc, "default", "", required=False, nullable=True)
    if limits is not None:
        f.known(limits, "default", LIMIT_FIELDS)
        max_conn = f.integer(limits, "max_concurrent_connections", "default", minimum=0)
        max_msgs = f.integer(limits, "max_messages_per_hour", "default", minimum=0)
        if max_conn is not None and max_msgs is not None:
            default = Limits(max_conn, max_msgs)
    # The address's own throttling rules: they win over the template's (contract §2.6).
    rules = parse_rules(f, doc)
    f.check()
    assert name is not None and ip is not None and hostname is not None
    return IpAddress(
        rules=rules,
        name=name,
        ip=ip,
        hostname=hostname,
        delivery_paused=paused,
        redirect=redirect,
        throttling_template=template,
        default=default,
    )


def render(record: IpAddress) -> dict[str, Any]:
    """The full record, exactly as GET returns it."""
    default = None
    if record.default is not None:
        default = {
            "max_concurrent_connections": record.default.max_concurrent_connections,
            "max_messages_per_hour": record.default.max_messages_per_hour,
        }
    return {
        "id": record.id,
        "name": record.name,
        "ip": record.ip,
        "hostname": record.hostname,
        "delivery_paused": record.delivery_paused,
        "redirect": redirect_out(record.redirect),
        "throttling_template": ref_out(record.throttling_template),
        "default": default,
        "rules": render_rules(record.rules),
    }


def strip_read_only(doc: JsonObject) -> JsonObject:
    return {k: v for k, v in doc.items() if k != "id"}
