"""A Dynamic Delivery backoff as the JSON kept in Redis (delivery/throttles/redis_backoffs.py): its
times and reason, the program that decided it and where its throttle comes from, so that
any node can apply it and show it in the Throttles API (contract §2.11). The throttle
key is the index member, a JSON array."""

from __future__ import annotations

import json
import logging
from typing import Any

from vmta.domain.config.virtual_mta import Limits
from vmta.domain.limits.throttle_backoff import Backoff
from vmta.domain.limits.throttle_identity import ThrottleKey, ThrottleOrigin
from vmta.domain.limits.throttle_program import (
    BackoffLimits,
    BackoffMode,
    BackoffValue,
    ThrottleProgram,
)

log = logging.getLogger(__name__)


def member_of(key: ThrottleKey) -> str:
    return json.dumps(list(key), separators=(",", ":"))


def key_of(member: str) -> ThrottleKey | None:
    try:
        parts = json.loads(member)
    except ValueError:
        return None
    if not isinstance(parts, list) or not all(isinstance(p, str) for p in parts):
        return None
    return tuple(parts)


def as_text(raw: object) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def encode(backoff: Backoff, program: ThrottleProgram | None, origin: ThrottleOrigin | None) -> str:
    record: dict[str, Any] = {
        "began_at": backoff.began_at,
        "ends_at": backoff.ends_at,
        "reason": backoff.reason,
        "program": None if program is None else _program_json(program),
        "origin": None if origin is None else _origin_json(origin),
    }
    return json.dumps(record, separators=(",", ":"), sort_keys=True)


def decode(text: str) -> tuple[Backoff, ThrottleProgram | None, ThrottleOrigin | None] | None:
    """A backoff written by ``encode`` (on any node); None for anything else."""
    try:
        record = json.loads(text)
        backoff = Backoff(
            began_at=float(record["began_at"]),
            ends_at=float(record["ends_at"]),
            reason=str(record["reason"]),
        )
        program = None if record["program"] is None else _program(record["program"])
        origin = None if record["origin"] is None else _origin(record["origin"])
    except (ValueError, KeyError, TypeError):
        log.warning("ignoring a backoff in Redis that vmta did not write: %.200s", text)
        return None
    return backoff, program, origin


def _program_json(program: ThrottleProgram) -> dict[str, Any]:
    limits = program.backoff
    return {
        "id": program.id,
        "name": program.name,
        "return_after": program.return_after,
        "failure_rate": program.failure_rate,
        "deferral_rate": program.deferral_rate,
        "max_concurrent_connections": [
            limits.max_concurrent_connections.mode.value,
            limits.max_concurrent_connections.value,
        ],
        "max_messages_per_hour": [
            limits.max_messages_per_hour.mode.value,
            limits.max_messages_per_hour.value,
        ],
    }


def _program(data: dict[str, Any]) -> ThrottleProgram:
    def value(pair: list[Any]) -> BackoffValue:
        mode, amount = pair
        return BackoffValue(BackoffMode(mode), int(amount))

    return ThrottleProgram(
        name=str(data["name"]),
        backoff=BackoffLimits(
            value(data["max_concurrent_connections"]), value(data["max_messages_per_hour"])
        ),
        return_after=int(data["return_after"]),
        failure_rate=None if data["failure_rate"] is None else int(data["failure_rate"]),
        deferral_rate=None if data["deferral_rate"] is None else int(data["deferral_rate"]),
        id=None if data["id"] is None else int(data["id"]),
    )


def _origin_json(origin: ThrottleOrigin) -> dict[str, Any]:
    return {
        "ip_address_id": origin.ip_address_id,
        "ip_address_name": origin.ip_address_name,
        "rule_type": origin.rule_type,
        "rule_id": origin.rule_id,
        "owner_id": origin.owner_id,
        "owner_name": origin.owner_name,
        "domains": list(origin.domains),
        "normal": [origin.normal.max_concurrent_connections, origin.normal.max_messages_per_hour],
    }


def _origin(data: dict[str, Any]) -> ThrottleOrigin:
    connections, per_hour = data["normal"]
    return ThrottleOrigin(
        ip_address_id=int(data["ip_address_id"]),
        ip_address_name=str(data["ip_address_name"]),
        rule_type=str(data["rule_type"]),
        rule_id=None if data["rule_id"] is None else int(data["rule_id"]),
        owner_id=None if data["owner_id"] is None else int(data["owner_id"]),
        owner_name=None if data["owner_name"] is None else str(data["owner_name"]),
        domains=tuple(str(d) for d in data["domains"]),
        normal=Limits(int(connections), int(per_hour)),
    )
