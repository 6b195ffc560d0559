"""The Throttles API: which throttles are in backoff, the throttles of an
IP address, and ending backoff by hand.

A throttle here is what vmta counts together for one IP address (``throttle_rules``): it
exists on a node once mail has gone through it since that node started, once it is asked
for by domain, or (with Redis) once any node put it into backoff. The state lives in the
data plane (``ThrottleStates``, one of the ``ApiPorts`` given to ``create_app``); this
module brings it up to date (``refresh``: with Redis, the cluster's backoffs), renders
it, and ends backoff on every node (``end_everywhere``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from vmta.api.dependencies import ports_of, store_of
from vmta.api.greenarrow.envelope import success
from vmta.api.greenarrow.fields import parse_record_id
from vmta.api.greenarrow.pagination import page_request, paginated
from vmta.api.openapi import envelope_responses
from vmta.api.ports import ThrottleStates
from vmta.domain.config.virtual_mta import IpAddress, ThrottlingTemplate, VirtualMtaType
from vmta.domain.errors import InvalidRequest, NotFound
from vmta.domain.limits.throttle_identity import ThrottleKey, ThrottleOrigin, ThrottleState
from vmta.domain.limits.throttle_identity import throttle_origin as origin_of
from vmta.domain.limits.throttle_rules import ThrottleTable, ip_throttle_key
from vmta.store.store import Store
from vmta.store.throttling_templates import ThrottlingTemplateRepository
from vmta.store.virtual_mtas import VirtualMtaRepository

_DOMAIN = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+$")


def _states(request: Request) -> ThrottleStates:
    return ports_of(request).throttle_states


def _now(request: Request) -> float:
    return ports_of(request).now()


def _time(moment: float | None) -> str | None:
    """ISO 8601 with an offset, as GreenArrow writes times."""
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds")


def render(state: ThrottleState) -> dict[str, Any]:
    origin = state.origin
    ip = None if origin is None else {"id": origin.ip_address_id, "name": origin.ip_address_name}
    rule = None
    if origin is not None:
        owner_key = (
            "throttling_template" if origin.rule_type == "throttling_template" else "ip_address"
        )
        rule = {
            "type": origin.rule_type,
            "id": origin.rule_id,
            owner_key: {"id": origin.owner_id, "name": origin.owner_name},
        }
    backoff = state.backoff
    reduced = state.limits if backoff is not None else None
    return {
        "id": state.id,
        "ip_address": ip,
        "throttling_rule": rule,
        "normal_max_messages_per_hour": None
        if origin is None
        else origin.normal.max_messages_per_hour,
        "normal_max_concurrent_connections": None
        if origin is None
        else origin.normal.max_concurrent_connections,
        "domains": [] if origin is None else list(origin.domains),
        "in_backoff": backoff is not None,
        "backoff_reason": None if backoff is None else backoff.reason,
        "backoff_began_at": None if backoff is None else _time(backoff.began_at),
        "backoff_ends_at": None if backoff is None else _time(backoff.ends_at),
        "backoff_max_messages_per_hour": None if reduced is None else reduced.max_messages_per_hour,
        "backoff_max_concurrent_connections": None
        if reduced is None
        else reduced.max_concurrent_connections,
    }


def _page_of(items: list[ThrottleState]) -> Callable[[int | None, int, int], list[ThrottleState]]:
    def fetch(after: int | None, offset: int, limit: int) -> list[ThrottleState]:
        if after is not None:
            return [s for s in items if s.id > after][:limit]
        return items[offset : offset + limit]

    return fetch


def _ip_address(store: Store, ip_id: int) -> tuple[IpAddress, ThrottlingTemplate | None]:
    with store.read() as conn:
        record = VirtualMtaRepository(conn).get(ip_id, VirtualMtaType.IP_ADDRESS)
        if not isinstance(record, IpAddress):
            raise NotFound(f"No IP address with id {ip_id}.")
        template = None
        if record.throttling_template is not None and record.throttling_template.id is not None:
            template = ThrottlingTemplateRepository(conn).get(record.throttling_template.id)
        return record, template


def _throttle_for(store: Store, ip_id: int, domain: str) -> tuple[ThrottleKey, ThrottleOrigin]:
    """The throttle mail from ``ip_id`` to ``domain`` uses, as the router chooses it.
    ``mx:`` patterns need the domain's MX hosts, which the API does not look up: a
    domain reached only through an ``mx:`` rule shows the rule its name matches."""
    if not _DOMAIN.match(domain):
        raise InvalidRequest(f"{domain!r} is not a domain name.")
    ip, template = _ip_address(store, ip_id)
    match = ThrottleTable(template, ip.rules).match(domain, (), ip.default)
    origin = origin_of(ip, template, match, domain.lower())
    assert origin is not None  # a stored IP address has an id
    return ip_throttle_key(ip.ip, match), origin


def router() -> APIRouter:
    api = APIRouter(tags=["throttles"])

    def listed(
        plural: str, scope: str, items: list[ThrottleState], request: Request
    ) -> JSONResponse:
        page = page_request(request.query_params, scope)
        return success(
            paginated(
                plural,
                page,
                scope,
                fetch=_page_of(items),
                count=lambda: len(items),
                render=render,
                id_of=lambda s: s.id,
            )
        )

    @api.get(
        "/throttles_in_backoff",
        summary="Throttles in backoff now",
        responses=envelope_responses("throttles", list_of=True),
    )
    async def in_backoff(request: Request) -> JSONResponse:
        states = _states(request)
        await states.refresh()
        items = states.in_backoff(_now(request))
        return listed("throttles", "throttles_in_backoff", items, request)

    @api.get(
        "/ip_addresses/{record_id}/throttles",
        summary="The throttles of an IP address that carried mail since this node started",
        responses=envelope_responses("throttles", list_of=True),
    )
    async def of_ip(record_id: str, request: Request) -> JSONResponse:
        rid = parse_record_id(record_id)
        await run_in_threadpool(_ip_address, store_of(request), rid)
        states = _states(request)
        await states.refresh()
        items = states.of_ip_address(rid, _now(request))
        return listed("throttles", f"throttles|{rid}", items, request)

    @api.get(
        "/ip_addresses/{record_id}/throttles/{domain}",
        summary="The throttle that mail to a domain uses",
        responses=envelope_responses("throttle"),
    )
    async def by_domain(record_id: str, domain: str, request: Request) -> JSONResponse:
        rid = parse_record_id(record_id)
        key, origin = await run_in_threadpool(_throttle_for, store_of(request), rid, domain)
        states = _states(request)
        await states.refresh()
        return success({"throttle": render(states.state(key, _now(request), origin))})

    @api.post(
        "/ip_addresses/{record_id}/throttles/{domain}/end_backoff",
        summary="Take the throttle that mail to a domain uses out of backoff now",
        responses=envelope_responses("throttle"),
    )
    async def end_backoff(record_id: str, domain: str, request: Request) -> JSONResponse:
        rid = parse_record_id(record_id)
        key, origin = await run_in_threadpool(_throttle_for, store_of(request), rid, domain)
        states = _states(request)
        await states.end_everywhere(key)
        return success({"throttle": render(states.state(key, _now(request), origin))})

    return api
