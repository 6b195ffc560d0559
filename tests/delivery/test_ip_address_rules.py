"""An IP address's own throttling rules win over its template's for the domains they
match (contract §2.6): in the path the router resolves, and at a real MX sink published by
a real DNS server. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.delivery.conftest import eventually, insert, ip_vmta, message
from vmta.delivery.routing.router import Deliver
from vmta.domain.attempts.spool_records import Job
from vmta.domain.config.virtual_mta import Limits, Ref, ThrottleRule, ThrottlingTemplate
from vmta.store.throttling_templates import ThrottlingTemplateRepository

pytestmark = pytest.mark.peers


def job(address: str, selector: str) -> Job:
    now = time.time()
    return Job(
        recipient_id=1,
        message_id="M1",
        address=address,
        attempts=0,
        mail_from="s@src.test",
        received_at=now,
        expires_at=now + 3600,
        vmta_selector=selector,
        routing_memory=None,
        is_bounce=False,
    )


async def test_ip_rules_win_over_the_template(world: Any) -> None:
    plane, sinks = world
    with plane.store.write() as conn:
        template_id = ThrottlingTemplateRepository(conn).insert(
            ThrottlingTemplate(
                name="tmpl",
                default=Limits(5, 0),
                rules=[ThrottleRule(domains=["[*.]a.test", "c.test"], limits=Limits(4, 0))],
            )
        )
    ip_id = insert(
        plane,
        ip_vmta(
            "ip-1",
            throttling_template=Ref(id=template_id),
            rules=[ThrottleRule(domains=["a.test"], limits=Limits(1, 0))],
        ),
    )
    router = plane.plane.engine.router
    own = await router.decide(job("user@a.test", "ip-1"))
    assert isinstance(own, Deliver) and own.path.limits == Limits(1, 0)
    origin = own.path.throttle_origin
    assert origin is not None and origin.rule_type == "ip_address"
    assert origin.owner_id == ip_id and origin.domains == ("a.test",)
    # A domain the address's rules do not name keeps the template's rule.
    other = await router.decide(job("user@c.test", "ip-1"))
    assert isinstance(other, Deliver) and other.path.limits == Limits(4, 0)
    assert other.path.throttle_origin is not None
    assert other.path.throttle_origin.rule_type == "throttling_template"
    assert other.path.throttle_origin.owner_id == template_id

    async def send(i: int) -> None:
        await plane.asend(message("ip-1", f"a-{i}"), ["user@a.test"])

    await asyncio.gather(*(send(i) for i in range(30)))
    a_sink = sinks["127.0.0.20"]
    await eventually(lambda: len(a_sink.messages) == 30, timeout=60, what="30 deliveries")
    assert a_sink.max_concurrent == 1  # the IP rule's limit, not the template's 4
