"""Throttling rules as stored: the JSON rows of a template's ``rules`` column and of an
IP address's ``throttle_rules`` column, one shape for both."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection

from vmta.domain.config.virtual_mta import Limits, Ref, ThrottleRule
from vmta.store.throttle_programs import ThrottleProgramRepository


def rules_json(rules: Sequence[ThrottleRule], allocate: Callable[[], int]) -> list[dict[str, Any]]:
    """Rows for storage; a rule without an id gets one from ``allocate``."""
    return [
        {
            "id": rule.id if rule.id is not None else allocate(),
            "domains": list(rule.domains),
            "max_concurrent_connections": rule.limits.max_concurrent_connections,
            "max_messages_per_hour": rule.limits.max_messages_per_hour,
            "throttle_program_id": None
            if rule.throttle_program is None
            else rule.throttle_program.id,
        }
        for rule in rules
    ]


def rules_from_json(conn: Connection, rows: Sequence[dict[str, Any]] | None) -> list[ThrottleRule]:
    """Stored rows back to rules, program references written with their names."""
    rows = rows or []
    program_ids = [r["throttle_program_id"] for r in rows if r.get("throttle_program_id")]
    names = ThrottleProgramRepository(conn).names(program_ids)
    rules = []
    for r in rows:
        program_id = r.get("throttle_program_id")
        program = None if program_id is None else names.get(program_id, Ref(id=program_id))
        rules.append(
            ThrottleRule(
                id=r["id"],
                domains=list(r["domains"]),
                limits=Limits(r["max_concurrent_connections"], r["max_messages_per_hour"]),
                throttle_program=program,
            )
        )
    return rules


def program_ids(rules: Sequence[ThrottleRule]) -> list[int]:
    return [
        r.throttle_program.id
        for r in rules
        if r.throttle_program is not None and r.throttle_program.id is not None
    ]


def program_path(path: str) -> bool:
    """Whether a reference's field path names a throttle program (``rules[0].throttle_program``)."""
    return path.endswith(".throttle_program")
