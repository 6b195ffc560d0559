"""The engine's configuration cache (delivery/routing/config_view.py) against a real store: within
its second a value is read once; when it expires, the messages asking at once share one
load; a load that fails fails its waiters and leaves nothing behind."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import event

from tests.manual_clock import ManualClock
from vmta.delivery.routing.config_view import ConfigView
from vmta.store.store import Store

pytestmark = pytest.mark.one_database  # the cache's behaviour, not the database's


def count_selects(store: Store) -> list[str]:
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    event.listen(store.engine, "before_cursor_execute", seen)
    return statements


async def test_concurrent_askers_share_one_load_and_expiry_reloads(store: Store) -> None:
    clock = ManualClock()
    selects = count_selects(store)
    await ConfigView(store, clock, ttl=1.0).delivery_controls()
    one_load = len(selects)  # the queries of one load
    assert one_load > 0
    view = ConfigView(store, clock, ttl=1.0)

    answers = await asyncio.gather(*(view.delivery_controls() for _ in range(50)))

    assert len({id(a) for a in answers}) == 1  # one snapshot for all fifty
    assert len(selects) == 2 * one_load
    await view.delivery_controls()
    assert len(selects) == 2 * one_load  # cached within the second

    clock.advance(1.0)  # expired: fifty more askers, one more load
    await asyncio.gather(*(view.delivery_controls() for _ in range(50)))
    assert len(selects) == 3 * one_load


async def test_a_failed_load_fails_every_waiter_and_the_next_ask_loads_again(
    store: Store,
) -> None:
    view = ConfigView(store, ManualClock(), ttl=1.0)
    with store.write() as conn:
        conn.exec_driver_sql("DROP TABLE external_mtas")  # every load fails now

    results = await asyncio.gather(
        *(view.external_mtas() for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, Exception) for r in results), results
    assert view._loading == {}  # nothing left waiting: the next ask starts a load
