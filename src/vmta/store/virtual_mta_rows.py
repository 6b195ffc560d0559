"""VirtualMTAs as stored: the three types share one table (single-table inheritance), so
a record becomes the full set of its columns, with the columns its type does not use set
to null, and a row becomes the record of its ``type`` again, references written with the
names of the records they name."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Connection, select

from vmta.domain.config.virtual_mta import (
    DeliverThrough,
    Distribution,
    DomainOverride,
    IpAddress,
    Limits,
    RandomizationType,
    Ref,
    RelayServer,
    RoutingRule,
    VirtualMta,
    VirtualMtaType,
    type_of,
)
from vmta.store.tables import virtual_mtas
from vmta.store.throttle_rule_rows import rules_from_json, rules_json
from vmta.store.throttling_templates import template_ref

T = virtual_mtas.c


def target_ids(vmta: VirtualMta) -> list[int]:
    """The ids of the VirtualMTAs ``vmta`` sends through: a routing rule's entries, or
    the redirect of the other two types."""
    if isinstance(vmta, RoutingRule):
        return [r.id for r in vmta.targets() if r.id is not None]
    return [] if vmta.redirect is None or vmta.redirect.id is None else [vmta.redirect.id]


def refs_by_id(conn: Connection, ids: Iterable[int]) -> dict[int, Ref]:
    """``{type, id, name}`` of each of the VirtualMTAs ``ids`` that exists."""
    wanted = set(ids)
    if not wanted:
        return {}
    rows = conn.execute(select(T.id, T.type, T.name).where(T.id.in_(wanted)))
    return {r.id: Ref(id=r.id, name=r.name, type=VirtualMtaType(r.type)) for r in rows}


def row_values(vmta: VirtualMta, allocate: Callable[[], int]) -> dict[str, Any]:
    """Every column of ``vmta``'s row (a prepared record: its references have ids).
    An item without an id (domain override, throttling rule) gets one from ``allocate``."""
    values: dict[str, Any] = {
        "type": type_of(vmta).value,
        "name": vmta.name,
        "name_key": vmta.name.lower(),
        "redirect_id": None,
        "ip": None,
        "hostname": None,
        "destination_hostname": None,
        "destination_port": None,
        "username": None,
        "password": None,
        "max_concurrent_connections": None,
        "max_messages_per_hour": None,
        "delivery_paused": False,
        "throttling_template_id": None,
        "routing": None,
        "throttle_rules": None,
    }
    if isinstance(vmta, RelayServer):
        values.update(
            redirect_id=_id_of(vmta.redirect),
            ip=vmta.source_ip,
            hostname=vmta.source_hostname,
            destination_hostname=vmta.destination_hostname,
            destination_port=vmta.destination_port,
            username=vmta.username,
            password=vmta.password,
            max_concurrent_connections=vmta.throttle_limits.max_concurrent_connections,
            max_messages_per_hour=vmta.throttle_limits.max_messages_per_hour,
        )
    elif isinstance(vmta, IpAddress):
        values.update(
            redirect_id=_id_of(vmta.redirect),
            ip=vmta.ip,
            hostname=vmta.hostname,
            delivery_paused=vmta.delivery_paused,
            throttling_template_id=_id_of(vmta.throttling_template),
            throttle_rules=rules_json(vmta.rules, allocate),
        )
        if vmta.default is not None:
            values.update(
                max_concurrent_connections=vmta.default.max_concurrent_connections,
                max_messages_per_hour=vmta.default.max_messages_per_hour,
            )
    else:
        overrides = []
        for override in vmta.domain_overrides:
            override_id = override.id or allocate()
            overrides.append(
                {"id": override_id, "domains": list(override.domains)}
                | _distribution_json(override.distribution)
            )
        values["routing"] = {
            "default": _distribution_json(vmta.default),
            "domain_overrides": overrides,
        }
    return values


def record_from_row(conn: Connection, row: Any) -> VirtualMta:
    """The record of a row of ``virtual_mtas`` (a mapping), its references named."""
    kind = VirtualMtaType(row["type"])
    redirect = None
    if row["redirect_id"] is not None:
        redirect = refs_by_id(conn, [row["redirect_id"]]).get(row["redirect_id"])
    if kind is VirtualMtaType.RELAY_SERVER:
        return RelayServer(
            id=row["id"],
            name=row["name"],
            source_ip=row["ip"],
            source_hostname=row["hostname"],
            destination_hostname=row["destination_hostname"],
            destination_port=row["destination_port"],
            username=row["username"],
            password=row["password"],
            throttle_limits=Limits(row["max_concurrent_connections"], row["max_messages_per_hour"]),
            redirect=redirect,
        )
    if kind is VirtualMtaType.IP_ADDRESS:
        template = None
        if row["throttling_template_id"] is not None:
            template = template_ref(conn, Ref(id=row["throttling_template_id"]))
        default = None
        if row["max_concurrent_connections"] is not None:
            default = Limits(row["max_concurrent_connections"], row["max_messages_per_hour"])
        return IpAddress(
            id=row["id"],
            name=row["name"],
            ip=row["ip"],
            hostname=row["hostname"],
            delivery_paused=bool(row["delivery_paused"]),
            redirect=redirect,
            throttling_template=template,
            default=default,
            rules=rules_from_json(conn, row["throttle_rules"]),
        )
    routing = row["routing"]
    entries = [routing["default"], *routing["domain_overrides"]]
    names = refs_by_id(
        conn, (e["virtual_mta_id"] for dist in entries for e in dist["deliver_through"])
    )
    return RoutingRule(
        id=row["id"],
        name=row["name"],
        default=_distribution_from_json(routing["default"], names),
        domain_overrides=[
            DomainOverride(
                id=o["id"],
                domains=list(o["domains"]),
                distribution=_distribution_from_json(o, names),
            )
            for o in routing["domain_overrides"]
        ],
    )


def _id_of(ref: Ref | None) -> int | None:
    return None if ref is None else ref.id


def _distribution_json(dist: Distribution) -> dict[str, Any]:
    return {
        "randomization_type": dist.randomization_type.value,
        "deliver_through": [
            {"virtual_mta_id": e.virtual_mta.id, "portion_of_mail": e.portion_of_mail}
            for e in dist.deliver_through
        ],
    }


def _distribution_from_json(data: dict[str, Any], names: dict[int, Ref]) -> Distribution:
    return Distribution(
        randomization_type=RandomizationType(data["randomization_type"]),
        deliver_through=[
            DeliverThrough(
                virtual_mta=names.get(e["virtual_mta_id"], Ref(id=e["virtual_mta_id"])),
                portion_of_mail=float(e["portion_of_mail"]),
            )
            for e in data["deliver_through"]
        ],
    )
