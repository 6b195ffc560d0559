"""Factories for VirtualMTAs of every type, written straight through the repository (the
IP address endpoints are built elsewhere) and request bodies for routing rules."""

from __future__ import annotations

from typing import Any

from vmta.domain.config.virtual_mta import (
    DeliverThrough,
    Distribution,
    IpAddress,
    Limits,
    RandomizationType,
    Ref,
    RelayServer,
    RoutingRule,
    VirtualMta,
)
from vmta.store.store import Store
from vmta.store.virtual_mtas import VirtualMtaRepository


def add(store: Store, vmta: VirtualMta) -> int:
    with store.write() as conn:
        repo = VirtualMtaRepository(conn)
        return repo.insert(repo.prepare(vmta, own_id=None))


def add_ip_address(store: Store, name: str, redirect: int | None = None) -> int:
    return add(
        store,
        IpAddress(
            name=name,
            ip="127.0.0.3",
            hostname="mta.example.com",
            redirect=None if redirect is None else Ref(id=redirect),
        ),
    )


def add_relay_server(store: Store, name: str, redirect: int | None = None) -> int:
    return add(
        store,
        RelayServer(
            name=name,
            source_ip="127.0.0.2",
            source_hostname="out.example.com",
            destination_hostname="127.0.0.1",
            destination_port=25,
            username=None,
            password=None,
            throttle_limits=Limits(0, 0),
            redirect=None if redirect is None else Ref(id=redirect),
        ),
    )


def add_routing_rule(store: Store, name: str, *targets: int) -> int:
    entries = [DeliverThrough(virtual_mta=Ref(id=t), portion_of_mail=1.0) for t in targets]
    return add(
        store,
        RoutingRule(name=name, default=Distribution(RandomizationType.RANDOM, entries)),
    )


def entry(ref: Any, portion: Any = 1) -> dict[str, Any]:
    return {"virtual_mta": ref, "portion_of_mail": portion}


def distribution(*entries: dict[str, Any], kind: str = "random") -> dict[str, Any]:
    return {"randomization_type": kind, "deliver_through": list(entries)}


def rule_body(name: str = "rule-1", **fields: Any) -> dict[str, Any]:
    """``{"routing_rule": {...}}`` sending everything through the VirtualMTA named
    ``ip-1`` unless ``fields`` say otherwise."""
    record: dict[str, Any] = {"name": name, "default": distribution(entry({"name": "ip-1"}))}
    record.update(fields)
    return {"routing_rule": record}
