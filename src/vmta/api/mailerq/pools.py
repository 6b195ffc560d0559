"""``/v1/pools`` and ``/v1/poolips`` (MailerQ REST API v1 "Pools").

Pool members are written with both ``localip`` and ``ip`` carrying the address: MailerQ's
documentation names the field ``ip``, its server and its .NET SDK ``localip``; writing
both serves either kind of client, and either is accepted on the way in (both at once
only with the same address). An unknown pool is 404 for ``/v1/poolips``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from vmta.api.dependencies import store_of
from vmta.api.mailerq import fields as f
from vmta.api.mailerq.body import Fields, combine, read_body
from vmta.api.mailerq.schemas import body_spec, responses
from vmta.domain.config.ip_pool import IpPool, pool_name_problem
from vmta.domain.errors import NotFound
from vmta.store.ip_pools import IpPoolRepository

POOLS = "/v1/pools"
POOL_IPS = "/v1/poolips"
ALLOW = "GET, POST, DELETE"
POOL_FIELDS = ("name", "description")
MEMBER_FIELDS = ("name", "ip", "localip")


def _name(fields: Fields, problems: list[str]) -> str | None:
    name = f.string(fields, "name", problems, required=True, limit=200)
    if name is None:
        return None
    problem = pool_name_problem("name", name)
    if problem is not None:
        problems.append(problem)
        return None
    return name


def parse_pool(fields: Fields) -> IpPool:
    problems = f.unknown_problems(fields, POOL_FIELDS)
    name = _name(fields, problems)
    description = f.string(fields, "description", problems, limit=1000)
    f.raise_if(problems)
    assert name is not None
    return IpPool(name, description)


def pool_key(fields: Fields) -> str:
    """The ``name`` a DELETE names (a record as GET wrote it is accepted)."""
    problems = f.unknown_problems(fields, POOL_FIELDS)
    name = _name(fields, problems)
    f.raise_if(problems)
    assert name is not None
    return name


def parse_member(fields: Fields) -> tuple[str, str]:
    """(pool name, canonical address) from ``{name, ip | localip}``."""
    problems = f.unknown_problems(fields, MEMBER_FIELDS)
    name = _name(fields, problems)
    ip = f.ip(fields, "ip", problems)
    localip = f.ip(fields, "localip", problems)
    if ip is not None and localip is not None and ip != localip:
        problems.append("ip and localip name different addresses; give one of them")
    address = ip or localip
    if address is None and not any(f.given(fields, n) for n in ("ip", "localip")):
        problems.append("ip (or localip) is required")
    f.raise_if(problems)
    assert name is not None and address is not None
    return name, address


def render_pool(pool: IpPool) -> dict[str, str]:
    record = {"name": pool.name}
    if pool.description is not None:
        record["description"] = pool.description
    return record


def render_member(name: str, ip: str) -> dict[str, str]:
    return {"name": name, "localip": ip, "ip": ip}


_POOL = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$"},
        "description": {"type": "string"},
    },
}
_MEMBER_OUT = {
    "type": "object",
    "required": ["name", "localip", "ip"],
    "properties": {
        "name": {"type": "string"},
        "localip": {"type": "string", "description": "the address"},
        "ip": {"type": "string", "description": "the same address"},
    },
}
_MEMBER_IN: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string"},
        "ip": {"type": "string", "description": "IPv4 or IPv6 address"},
        "localip": {"type": "string", "description": "the same as ip (either may be given)"},
    },
}


def router() -> APIRouter:
    api = APIRouter(tags=["pools (MailerQ v1)"])

    @api.get(POOLS, summary="List IP pools", responses=responses("Every pool", _POOL, array=True))
    async def list_pools(request: Request) -> JSONResponse:
        store = store_of(request)

        def work() -> list[dict[str, str]]:
            with store.read() as conn:
                return [render_pool(p) for p in IpPoolRepository(conn).all()]

        return JSONResponse(await run_in_threadpool(work))

    @api.post(
        POOLS,
        summary="Create a pool, or update its description",
        openapi_extra=body_spec(_POOL, required=True),
        responses=responses("The stored pool", _POOL, codes=(400, 415)),
    )
    async def post_pool(request: Request) -> JSONResponse:
        pool = parse_pool(read_body(await request.body(), request.headers.get("content-type")))
        store = store_of(request)

        def work() -> dict[str, str]:
            with store.write() as conn:
                return render_pool(IpPoolRepository(conn).put(pool))

        return JSONResponse(await run_in_threadpool(work))

    @api.delete(
        POOLS,
        summary="Remove a pool and its members",
        openapi_extra=body_spec(_POOL, required=False),
        responses=responses("The deleted pool", _POOL, codes=(400, 404, 415)),
    )
    async def delete_pool(request: Request) -> JSONResponse:
        body = read_body(await request.body(), request.headers.get("content-type"))
        name = pool_key(combine(body, f.query_fields(request)))
        store = store_of(request)

        def work() -> dict[str, str] | None:
            with store.write() as conn:
                removed = IpPoolRepository(conn).remove(name)
                return None if removed is None else render_pool(removed)

        record = await run_in_threadpool(work)
        if record is None:
            raise NotFound(f"No pool is named {name}.")
        return JSONResponse(record)

    @api.get(
        POOL_IPS,
        summary="List the addresses of a pool (?name=POOL)",
        responses=responses("The pool's addresses", _MEMBER_OUT, array=True, codes=(400, 404)),
    )
    async def list_members(request: Request) -> JSONResponse:
        query = f.query_fields(request)
        problems = f.unknown_problems(query, ("name",))
        name = _name(query, problems)
        f.raise_if(problems)
        assert name is not None
        store = store_of(request)

        def work() -> list[str] | None:
            with store.read() as conn:
                return IpPoolRepository(conn).members(name)

        members = await run_in_threadpool(work)
        if members is None:
            raise NotFound(f"No pool is named {name}.")
        return JSONResponse([render_member(name, ip) for ip in members])

    @api.post(
        POOL_IPS,
        summary="Add an address to a pool (moving it from any other pool)",
        openapi_extra=body_spec(_MEMBER_IN, required=True),
        responses=responses("The added address", _MEMBER_OUT, codes=(400, 404, 415)),
    )
    async def post_member(request: Request) -> JSONResponse:
        body = read_body(await request.body(), request.headers.get("content-type"))
        name, ip = parse_member(body)
        store = store_of(request)

        def work() -> bool:
            with store.write() as conn:
                return IpPoolRepository(conn).add_member(name, ip)

        if not await run_in_threadpool(work):
            raise NotFound(f"No pool is named {name}.")
        return JSONResponse(render_member(name, ip))

    @api.delete(
        POOL_IPS,
        summary="Remove an address from a pool",
        openapi_extra=body_spec(_MEMBER_IN, required=False),
        responses=responses("The removed address", _MEMBER_OUT, codes=(400, 404, 415)),
    )
    async def delete_member(request: Request) -> JSONResponse:
        body = read_body(await request.body(), request.headers.get("content-type"))
        name, ip = parse_member(combine(body, f.query_fields(request)))
        store = store_of(request)

        def work() -> bool | None:
            with store.write() as conn:
                return IpPoolRepository(conn).remove_member(name, ip)

        removed = await run_in_threadpool(work)
        if removed is None:
            raise NotFound(f"No pool is named {name}.")
        if not removed:
            raise NotFound(f"{ip} is not in pool {name}.")
        return JSONResponse(render_member(name, ip))

    api.routes.append(f.other_methods_route(POOLS, ALLOW))
    api.routes.append(f.other_methods_route(POOL_IPS, ALLOW))
    return api
