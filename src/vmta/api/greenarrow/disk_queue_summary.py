"""``GET /ga/api/v3/eng/disk_queue_summary``: where the queued mail is, by VirtualMTA and,
with ``group_variant``, by recipient domain or by throttle, largest first.

GreenArrow's Disk Queue Summary names the groupings (``group_by=virtualmta_injected``, the
default, or ``virtualmta_most_recent``; ``group_variant=domain`` or ``throttle``); the row
shape is vmta's: ``{virtual_mta: {type, id, name} | null, domain | throttle, messages,
recipients, bytes, oldest_injected_at, next_attempt_at, last_reply}``. ``virtual_mta`` is
null for mail that names no VirtualMTA (or one that does not exist): the default carries
it. A throttle is what the Throttles API shows (``throttle_id``), for mail whose
VirtualMTA is an IP address; null for the others (a relay server or a routing rule
decides the sending IP only at the attempt).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import Connection

from vmta.api.dependencies import store_of
from vmta.api.greenarrow.envelope import success
from vmta.api.openapi import envelope_responses, query, with_query
from vmta.domain.config.virtual_mta import IpAddress, VirtualMta, type_of
from vmta.domain.errors import InvalidRequest
from vmta.domain.limits.throttle_identity import throttle_id
from vmta.domain.limits.throttle_rules import ThrottleTable, ip_throttle_key
from vmta.domain.paths.mta_selector import selector_target
from vmta.store.queue_summary import GroupBy, QueueGroup, queue_groups
from vmta.store.store import Store
from vmta.store.throttling_templates import ThrottlingTemplateRepository
from vmta.store.virtual_mtas import VirtualMtaRepository

VARIANTS = ("domain", "throttle")
KEY = "disk_queue_summary"

ROW_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [
        "virtual_mta",
        "messages",
        "recipients",
        "bytes",
        "oldest_injected_at",
        "next_attempt_at",
        "last_reply",
    ],
    "properties": {
        "virtual_mta": {
            "anyOf": [
                {
                    "type": "object",
                    "properties": {
                        "type": {"type": "string"},
                        "id": {"type": "integer"},
                        "name": {"type": "string"},
                    },
                },
                {"type": "null"},
            ]
        },
        "domain": {"type": "string"},
        "throttle": {
            "anyOf": [
                {
                    "type": "object",
                    "properties": {
                        "id": {"type": "integer"},
                        "name": {"type": "string"},
                        "ip_address": {"type": "object"},
                    },
                },
                {"type": "null"},
            ]
        },
        "messages": {"type": "integer"},
        "recipients": {"type": "integer"},
        "bytes": {"type": "integer"},
        "oldest_injected_at": {"type": "string", "format": "date-time"},
        "next_attempt_at": {"type": "string", "format": "date-time"},
        "last_reply": {"type": ["string", "null"]},
    },
}


def _time(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds")


@dataclass
class _Row:
    virtual_mta: dict[str, Any] | None
    variant: dict[str, Any] | str | None
    messages: int
    recipients: int
    bytes: int
    oldest: float
    next_attempt: float
    last_reply: str | None

    def add(self, group: QueueGroup) -> None:
        self.messages += group.messages
        self.recipients += group.recipients
        self.bytes += group.bytes
        self.oldest = min(self.oldest, group.oldest_injected_at)
        self.next_attempt = min(self.next_attempt, group.next_attempt_at)
        self.last_reply = self.last_reply or group.last_reply


class _Resolver:
    """VirtualMTAs by selector and throttles by (IP address, domain), each read once."""

    def __init__(self, conn: Connection) -> None:
        self.repo = VirtualMtaRepository(conn)
        self.templates = ThrottlingTemplateRepository(conn)
        self._vmtas: dict[str | None, VirtualMta | None] = {}
        self._defaults: dict[str, VirtualMta | None] = {}

    def virtual_mta(self, selector: str | None) -> VirtualMta | None:
        if selector not in self._vmtas:
            self._vmtas[selector] = self._load(selector)
        return self._vmtas[selector]

    def _load(self, selector: str | None) -> VirtualMta | None:
        if selector is None:
            return None
        target = selector_target(selector.strip())
        if target.id is not None:
            return self.repo.get(target.id)
        return None if target.name is None else self.repo.get_by_name(target.name)

    def _default(self) -> VirtualMta | None:
        """The default VirtualMTA, which carries mail that names none."""
        if "default" not in self._defaults:
            ref = self.repo.default()
            self._defaults["default"] = (
                None if ref is None or ref.id is None else self.repo.get(ref.id)
            )
        return self._defaults["default"]

    def throttle(self, vmta: VirtualMta | None, domain: str) -> dict[str, Any] | None:
        if vmta is None:
            vmta = self._default()
        if not isinstance(vmta, IpAddress):
            return None
        template = None
        if vmta.throttling_template is not None and vmta.throttling_template.id is not None:
            template = self.templates.get(vmta.throttling_template.id)
        match = ThrottleTable(template, vmta.rules).match(domain, (), vmta.default)
        return {
            "id": throttle_id(ip_throttle_key(vmta.ip, match)),
            "name": f"{vmta.name}: {match.source}",
            "ip_address": {"id": vmta.id, "name": vmta.name},
        }


def summary(store: Store, group_by: GroupBy, variant: str | None) -> list[dict[str, Any]]:
    groups = queue_groups(store, group_by)
    rows: dict[str, _Row] = {}
    with store.read() as conn:
        resolver = _Resolver(conn)
        for group in groups:
            vmta = resolver.virtual_mta(group.selector)
            ref = None if vmta is None else {"type": type_of(vmta).value, "id": vmta.id}
            if ref is not None and vmta is not None:
                ref["name"] = vmta.name
            value: dict[str, Any] | str | None = None
            if variant == "domain":
                value = group.domain
            elif variant == "throttle":
                value = resolver.throttle(vmta, group.domain)
            key = repr((ref, value))
            row = rows.get(key)
            if row is None:
                rows[key] = _Row(
                    ref,
                    value,
                    group.messages,
                    group.recipients,
                    group.bytes,
                    group.oldest_injected_at,
                    group.next_attempt_at,
                    group.last_reply,
                )
            else:
                row.add(group)
    ordered = sorted(rows.values(), key=lambda r: (-r.recipients, -r.messages, r.oldest))
    return [_render(row, variant) for row in ordered]


def _render(row: _Row, variant: str | None) -> dict[str, Any]:
    rendered: dict[str, Any] = {"virtual_mta": row.virtual_mta}
    if variant is not None:
        rendered[variant] = row.variant
    rendered.update(
        messages=row.messages,
        recipients=row.recipients,
        bytes=row.bytes,
        oldest_injected_at=_time(row.oldest),
        next_attempt_at=_time(row.next_attempt),
        last_reply=row.last_reply,
    )
    return rendered


def parse(params: Any) -> tuple[GroupBy, str | None]:
    """``group_by`` and ``group_variant``, every problem reported together."""
    problems = []
    raw_by = params.get("group_by", GroupBy.INJECTED.value)
    by = next((g for g in GroupBy if g.value == raw_by), None)
    if by is None:
        problems.append("group_by must be one of " + ", ".join(g.value for g in GroupBy) + ".")
    variant = params.get("group_variant")
    if variant is not None and variant not in VARIANTS:
        problems.append("group_variant must be one of " + ", ".join(VARIANTS) + ".")
    if problems:
        raise InvalidRequest(problems)
    assert by is not None
    return by, variant


def router() -> APIRouter:
    api = APIRouter(tags=["queue"])

    @api.get(
        "/disk_queue_summary",
        summary="Queued mail by VirtualMTA, and by recipient domain or throttle, largest first",
        responses=envelope_responses(KEY, list_of=True, item=ROW_SCHEMA),
        openapi_extra=with_query(
            {},
            query(
                "group_by",
                {"type": "string", "enum": [g.value for g in GroupBy]},
                "the VirtualMTA the mail was injected with (default) or the one of its"
                " most recent attempt",
            ),
            query(
                "group_variant",
                {"type": "string", "enum": list(VARIANTS)},
                "also group by recipient domain or by throttle",
            ),
        ),
    )
    async def disk_queue_summary(request: Request) -> JSONResponse:
        by, variant = parse(request.query_params)
        rows = await run_in_threadpool(summary, store_of(request), by, variant)
        return success({KEY: rows})

    return api
