"""JSON Schemas of what vmta's own ``/api/*`` endpoints answer, for the OpenAPI document
(each route's ``responses``). They describe the answers as they are: every documented
key, its type, null where it can be null; more keys may come in later versions."""

from __future__ import annotations

from typing import Any

_NUMBER_OR_NULL = {"type": ["number", "null"]}
_TEXT_OR_NULL = {"type": ["string", "null"]}
_COUNTS = {
    "type": "object",
    "required": ["queued", "delivered", "failed"],
    "properties": {
        "queued": {"type": "integer"},
        "delivered": {"type": "integer"},
        "failed": {"type": "integer"},
    },
}

HEALTH = {
    "type": "object",
    "required": ["status"],
    "properties": {
        "status": {"type": "string", "const": "ok"},
        # Each dependency's link (RabbitMQ, Redis): up or down, since when and why.
        "dependencies": {"type": "object"},
    },
}

QUEUE = {
    "type": "object",
    "required": ["recipients", "queued", "by_virtual_mta", "deferred", "engine"],
    "properties": {
        "recipients": _COUNTS,
        "queued": {
            "type": "object",
            "required": ["ready", "deferred", "waiting"],
            "properties": {
                "ready": {"type": "integer"},
                "deferred": {"type": "integer"},
                "waiting": {"type": "integer"},
            },
        },
        "by_virtual_mta": {
            "type": "array",
            "items": {
                "allOf": [_COUNTS],
                "type": "object",
                "required": ["virtual_mta"],
                "properties": {"virtual_mta": {"type": "string"}},
            },
        },
        "deferred": {"type": "array", "items": {"type": "object"}},
        "engine": {
            "type": "object",
            "required": ["running"],
            "properties": {
                "running": {"type": "boolean"},
                "processes": {"type": "integer", "description": "processes summed up"},
                "in_memory": {"type": "integer"},
                "recovered_in_flight": {"type": "integer"},
                "paths": {"type": "array", "items": {"type": "object"}},
            },
        },
    },
}

MESSAGE_ROW = {
    "type": "object",
    "required": ["id", "received_at", "mail_from", "size", "recipients", "queued"],
    "properties": {
        "id": {"type": "string"},
        "received_at": {"type": "number"},
        "mail_from": {"type": "string"},
        "size": {"type": "integer"},
        "vmta_selector": _TEXT_OR_NULL,
        "recipients": {"type": "integer"},
        "queued": {"type": ["integer", "null"]},
    },
}

MESSAGES = {
    "type": "object",
    "required": ["messages"],
    "properties": {"messages": {"type": "array", "items": MESSAGE_ROW}},
}

MESSAGE = {
    "type": "object",
    "required": ["message"],
    "properties": {
        "message": {
            "type": "object",
            "required": ["id", "mail_from", "recipients", "attempts"],
            "properties": {
                "id": {"type": "string"},
                "received_at": {"type": "number"},
                "expires_at": {"type": "number"},
                "mail_from": {"type": "string"},
                "size": {"type": "integer"},
                "vmta_selector": _TEXT_OR_NULL,
                "client_ip": _TEXT_OR_NULL,
                "auth_name": _TEXT_OR_NULL,
                "is_bounce": {"type": "boolean"},
                "recipients": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["address", "state", "attempts", "last_reply"],
                        "properties": {
                            "id": {"type": "integer"},
                            "address": {"type": "string"},
                            "state": {"type": "string"},
                            "attempts": {"type": "integer"},
                            "next_attempt_at": _NUMBER_OR_NULL,
                            "last_attempt_at": _NUMBER_OR_NULL,
                            "last_reply": _TEXT_OR_NULL,
                            "waiting_reason": _TEXT_OR_NULL,
                            "virtual_mta": _TEXT_OR_NULL,
                            "in_flight": {"type": "boolean"},
                        },
                    },
                },
                "attempts": {"type": "array", "items": {"type": "object"}},
            },
        }
    },
}

RETRIED = {
    "type": "object",
    "required": ["queue_id", "recipients_due_now"],
    "properties": {"queue_id": {"type": "string"}, "recipients_due_now": {"type": "integer"}},
}

DELETED = {
    "type": "object",
    "required": ["queue_id", "deleted"],
    "properties": {"queue_id": {"type": "string"}, "deleted": {"type": "boolean"}},
}

BULK = {
    "type": "object",
    "required": ["action", "changed", "in_flight", "messages_deleted"],
    "properties": {
        "action": {"type": "string", "enum": ["retry", "delete", "hold", "release"]},
        "changed": {"type": "integer", "description": "recipients changed"},
        "in_flight": {
            "type": "integer",
            "description": "recipients selected but claimed by a node (being delivered):"
            " left alone",
        },
        "messages_deleted": {
            "type": "integer",
            "description": "messages removed because no recipient was left (delete)",
        },
    },
}

EVENTS = {
    "type": "object",
    "required": ["destinations", "recovered_in_flight"],
    "properties": {
        "destinations": {"type": "array", "items": {"type": "object"}},
        "recovered_in_flight": {"type": "integer"},
    },
}


REPORTS = {
    "type": "object",
    "required": ["reports"],
    "properties": {
        "reports": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "received_at", "kind", "matched"],
                "properties": {
                    "id": {"type": "integer"},
                    "received_at": {"type": "number"},
                    "kind": {"type": "string"},
                    "matched": {"type": "boolean"},
                    "mailbox": _TEXT_OR_NULL,
                    "queue_id": _TEXT_OR_NULL,
                    "recipient": _TEXT_OR_NULL,
                    "report": {"type": ["object", "null"]},
                },
            },
        }
    },
}


def ok(schema: dict[str, Any], description: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route answering ``schema`` with 200."""
    return {200: {"description": description, "content": {"application/json": {"schema": schema}}}}
