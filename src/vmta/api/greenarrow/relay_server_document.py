"""Relay server documents: request bodies to records and records to responses
(seed 001 and contract §2.5)."""

from __future__ import annotations

from typing import Any

from vmta.api.greenarrow.fields import Fields, JsonObject
from vmta.api.greenarrow.references import redirect_out
from vmta.domain.config.names import (
    is_ip,
    is_ipv4,
    relay_hostname_problems,
    virtual_mta_name_problems,
)
from vmta.domain.config.virtual_mta import Limits, RelayServer

FIELDS = ("id", "name", "source_ip", "destination", "throttle_limits", "redirect")
ATOMIC = ("redirect",)
LIMIT_FIELDS = ("max_concurrent_connections", "max_messages_per_hour")
CREDENTIAL_MAX = 200


def _ipv4_rule(text: str) -> list[str]:
    return [] if is_ipv4(text) else ["must be a valid IPv4 address in dotted-decimal notation"]


def _destination_rule(text: str) -> list[str]:
    # An IP literal (IPv4 or IPv6) is also allowed as destination (contract §2.5).
    return [] if is_ip(text) else relay_hostname_problems(text)


def parse(doc: JsonObject) -> RelayServer:
    """A complete relay server from a (merged) document, or ValidationFailed listing every
    broken rule. Read-only fields (``id``, ``redirect.type``) are ignored."""
    f = Fields()
    f.known(doc, "", FIELDS)
    name = f.name(doc, rules=virtual_mta_name_problems)
    source_ip = source_hostname = dest_host = username = password = None
    dest_port = max_conn = max_msgs = None
    source = f.hash(doc, "source_ip", "")
    if source is not None:
        f.known(source, "source_ip", ("ip", "hostname"))
        source_ip = f.string(source, "ip", "source_ip", rules=_ipv4_rule)
        source_hostname = f.string(source, "hostname", "source_ip", rules=relay_hostname_problems)
    dest = f.hash(doc, "destination", "")
    if dest is not None:
        f.known(dest, "destination", ("hostname", "port", "username", "password"))
        dest_host = f.string(dest, "hostname", "destination", rules=_destination_rule)
        dest_port = f.integer(dest, "port", "destination", minimum=1, maximum=65535)
        username = f.string(
            dest,
            "username",
            "destination",
            required=False,
            nullable=True,
            max_length=CREDENTIAL_MAX,
        )
        password = f.string(
            dest,
            "password",
            "destination",
            required=False,
            nullable=True,
            max_length=CREDENTIAL_MAX,
        )
    limits = f.hash(doc, "throttle_limits", "")
    if limits is not None:
        f.known(limits, "throttle_limits", LIMIT_FIELDS)
        max_conn = f.integer(limits, "max_concurrent_connections", "throttle_limits", minimum=0)
        max_msgs = f.integer(limits, "max_messages_per_hour", "throttle_limits", minimum=0)
    redirect = f.ref(doc, "redirect", "")
    f.check()
    assert name is not None and source_ip is not None and source_hostname is not None
    assert dest_host is not None and dest_port is not None
    assert max_conn is not None and max_msgs is not None
    return RelayServer(
        name=name,
        source_ip=source_ip,
        source_hostname=source_hostname,
        destination_hostname=dest_host,
        destination_port=dest_port,
        username=username,
        password=password,
        throttle_limits=Limits(max_conn, max_msgs),
        redirect=redirect,
    )


def render(rs: RelayServer) -> dict[str, Any]:
    """The full record, exactly as GET returns it."""
    return {
        "id": rs.id,
        "name": rs.name,
        "source_ip": {"ip": rs.source_ip, "hostname": rs.source_hostname},
        "destination": {
            "hostname": rs.destination_hostname,
            "port": rs.destination_port,
            "username": rs.username,
            "password": rs.password,
        },
        "throttle_limits": {
            "max_concurrent_connections": rs.throttle_limits.max_concurrent_connections,
            "max_messages_per_hour": rs.throttle_limits.max_messages_per_hour,
        },
        "redirect": redirect_out(rs.redirect),
    }
