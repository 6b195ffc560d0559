"""JSON Schemas of GreenArrow request bodies, for the OpenAPI document.

Exact where a schema can be: the same field rules the ``*_document`` modules enforce
(patterns from ``schema_patterns``), unknown fields refused, read-only ``id`` accepted and
ignored. What only the store can tell (a taken name, a reference to nothing, a loop, the
record a PUT merges into) is not in any schema: such a request is answered 400
``validation_failed``, as the error responses say.
"""

from __future__ import annotations

import copy
from typing import Any

from vmta.api.schema_patterns import (
    EHLO_HOSTNAME,
    IP,
    IPV4,
    RELAY_HOSTNAME,
    TEMPLATE_NAME,
    TEXT,
    VIRTUAL_MTA_NAME,
    domain_pattern,
    stored_integer,
    text,
)

Schema = dict[str, Any]
IGNORED: Schema = {"description": "Read-only: ignored in requests"}
NULL: Schema = {"type": "null"}


def _object(properties: Schema, required: tuple[str, ...] = ()) -> Schema:
    schema: Schema = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    return schema


def _reference(*, with_type: bool) -> Schema:
    """``{"id": N}`` or ``{"name": "..."}``; when ``id`` is an integer it wins and
    ``name`` is not looked at."""
    properties: Schema = {"id": {"type": ["integer", "null"]}, "name": {}}
    if with_type:
        properties["type"] = IGNORED
    schema = _object(properties)
    schema["anyOf"] = [
        {"required": ["id"], "properties": {"id": {"type": "integer"}}},
        {"required": ["name"], "properties": {"id": NULL, "name": text(TEXT, max_length=10**6)}},
    ]
    return schema


VIRTUAL_MTA_REF = _reference(with_type=True)
TEMPLATE_REF = _reference(with_type=False)
LIMITS = _object(
    {
        "max_concurrent_connections": stored_integer(description="0 = unlimited"),
        "max_messages_per_hour": stored_integer(description="0 = unlimited"),
    },
    ("max_concurrent_connections", "max_messages_per_hour"),
)
_CREDENTIAL = {"type": ["string", "null"], "pattern": TEXT, "maxLength": 200}

RELAY_SERVER = _object(
    {
        "id": IGNORED,
        "name": text(VIRTUAL_MTA_NAME),
        "source_ip": _object(
            {"ip": IPV4, "hostname": text(RELAY_HOSTNAME, description="EHLO name")},
            ("ip", "hostname"),
        ),
        "destination": _object(
            {
                "hostname": {"anyOf": [text(RELAY_HOSTNAME), *IP["anyOf"]]},
                "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                "username": _CREDENTIAL,
                "password": _CREDENTIAL,
            },
            ("hostname", "port"),
        ),
        "throttle_limits": LIMITS,
        "redirect": {"anyOf": [VIRTUAL_MTA_REF, NULL]},
    },
    ("name", "source_ip", "destination", "throttle_limits"),
)

IP_ADDRESS = _object(
    {
        "id": IGNORED,
        "name": text(VIRTUAL_MTA_NAME),
        "ip": IPV4,
        "hostname": text(EHLO_HOSTNAME, description="EHLO name; not an IPv4 literal"),
        "delivery_paused": {"type": "boolean"},
        "redirect": {"anyOf": [VIRTUAL_MTA_REF, NULL]},
        "throttling_template": {"anyOf": [TEMPLATE_REF, NULL]},
        "default": {"anyOf": [LIMITS, NULL]},
    },
    ("name", "ip", "hostname"),
)

_DISTRIBUTION_PROPERTIES: Schema = {
    "randomization_type": {
        "type": "string",
        "enum": ["random", "message_constant", "email_address_constant"],
    },
    "deliver_through": {
        "type": "array",
        "minItems": 1,
        "items": _object(
            {
                "virtual_mta": VIRTUAL_MTA_REF,
                "portion_of_mail": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "maximum": 1e300,
                    "description": "A relative weight",
                },
            },
            ("virtual_mta", "portion_of_mail"),
        ),
    },
}
_DISTRIBUTION = ("randomization_type", "deliver_through")


def _domains(*, allow_mx: bool) -> Schema:
    return {
        "type": "array",
        "minItems": 1,
        "uniqueItems": True,
        "items": domain_pattern(allow_mx=allow_mx),
        "description": "Domain patterns, unique ignoring case",
    }


ROUTING_RULE = _object(
    {
        "id": IGNORED,
        "name": text(VIRTUAL_MTA_NAME),
        "default": _object(dict(_DISTRIBUTION_PROPERTIES), _DISTRIBUTION),
        "domain_overrides": {
            "type": "array",
            "items": _object(
                {"id": IGNORED, "domains": _domains(allow_mx=False), **_DISTRIBUTION_PROPERTIES},
                ("domains", *_DISTRIBUTION),
            ),
        },
    },
    ("name", "default"),
)

# One throttling rule of a template or of an IP address. On update, an ``id`` naming one
# of the record's rules keeps that rule's id; absent or null, the rule is new.
THROTTLE_RULE = _object(
    {
        "id": {"type": ["integer", "null"]},
        "domains": _domains(allow_mx=True),
        "max_concurrent_connections": stored_integer(),
        "max_messages_per_hour": stored_integer(),
        "throttle_program": {"anyOf": [TEMPLATE_REF, NULL], "description": "Dynamic Delivery"},
    },
    ("domains", "max_concurrent_connections", "max_messages_per_hour"),
)
_RULES = {"type": "array", "maxItems": 250, "items": THROTTLE_RULE}

THROTTLING_TEMPLATE = _object(
    {
        "id": IGNORED,
        "name": text(TEMPLATE_NAME),
        "rules": _RULES,
        "default": LIMITS,
        "throttle_program": {"type": "null", "description": "Accepted only as null"},
    },
    ("name", "default"),
)

IP_ADDRESS["properties"]["rules"] = _RULES  # the address's own, winning over the template's

DEFAULT_VIRTUAL_MTA = {"anyOf": [VIRTUAL_MTA_REF, NULL]}


def for_update(schema: Schema) -> Schema:
    """The schema of a PUT body: nothing is required, and hashes merge key by key into
    the stored record, so nothing is required inside them either (arrays and references
    are replaced whole and keep their rules)."""
    updated = copy.deepcopy(schema)
    _drop_required(updated)
    return updated


def _drop_required(schema: Schema) -> None:
    schema.pop("required", None)
    for value in schema.get("properties", {}).values():
        for member in [value, *value.get("anyOf", ())]:
            # A hash merges; a reference (a hash with its own anyOf) is replaced whole.
            if member.get("type") == "object" and "anyOf" not in member:
                _drop_required(member)
