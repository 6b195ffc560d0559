"""Dynamic Delivery in the engine: a destination that defers most recipients drives its
throttle into backoff (the built-in program: at 50% deferrals, 1 connection), the
dispatcher then uses the reduced limits, and ending the backoff restores them. Against a
real MX sink published by real DNS, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.delivery.conftest import eventually, insert, ip_vmta, message
from vmta.domain.config.virtual_mta import Limits, Ref, ThrottleRule, ThrottlingTemplate
from vmta.store.throttling_templates import ThrottlingTemplateRepository

pytestmark = pytest.mark.peers

BUILTIN_PROGRAM = 1  # "Automatic Backoff", seeded by the migration


async def test_deferrals_put_the_throttle_into_backoff_and_ending_it_restores(
    world: Any,
) -> None:
    plane, sinks = world
    with plane.store.write() as conn:
        template_id = ThrottlingTemplateRepository(conn).insert(
            ThrottlingTemplate(
                name="tmpl",
                default=Limits(5, 0),
                rules=[
                    ThrottleRule(
                        domains=["a.test"],
                        limits=Limits(5, 0),
                        throttle_program=Ref(id=BUILTIN_PROGRAM),
                    )
                ],
            )
        )
    insert(plane, ip_vmta("ip-1", throttling_template=Ref(id=template_id)))
    sink = sinks["127.0.0.20"]
    for i in range(12):
        sink.refuse(f"u{i}@a.test", "450 4.2.0 try again later")
    await asyncio.gather(
        *(plane.asend(message("ip-1", f"m{i}"), [f"u{i}@a.test"]) for i in range(12))
    )
    backoffs = plane.plane.backoffs
    states = await eventually(
        lambda: backoffs.in_backoff(time.time()), timeout=30, what="a throttle in backoff"
    )
    (state,) = states
    assert state.limits == Limits(1, 0)  # 1 connection; a percentage of unlimited stays so
    queues = list(plane.plane.engine.dispatcher.queues)
    key = state.key
    assert backoffs.limits(key, Limits(5, 0), time.time()) == Limits(1, 0)
    for queue in queues:
        if queue.path.throttle_key == key:
            assert plane.plane.engine.dispatcher.limits_of(queue) == Limits(1, 0)
    assert backoffs.end_backoff(key)
    assert backoffs.limits(key, Limits(5, 0), time.time()) == Limits(5, 0)
    assert not backoffs.in_backoff(time.time())
