"""Suppressions looked up by key (delivery/routing/config_view.py): a short list is read whole
with the other delivery controls and indexed in memory; a long one is never read whole,
each recipient costs one indexed query of the store. Either way an address's own entry
wins over its domain's, case is ignored, and a change applies when the configuration's
second has passed. SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event

from tests.manual_clock import ManualClock
from vmta.delivery.routing import config_view
from vmta.delivery.routing.config_view import ConfigView
from vmta.domain.paths.suppression import Suppression, SuppressionType
from vmta.store.store import Store
from vmta.store.suppressions import SuppressionRepository

ADDRESS, DOMAIN = SuppressionType.ADDRESS, SuppressionType.DOMAIN


def put(store: Store, *entries: Suppression) -> None:
    with store.write() as conn:
        for entry in entries:
            SuppressionRepository(conn).put(entry)


def suppression_rows_read(store: Store) -> list[int]:
    """How many rows of mq_suppressions each SELECT of it returned."""
    counts: list[int] = []

    def after(_conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
        if "mq_suppressions" in statement and statement.lstrip().upper().startswith("SELECT"):
            counts.append(cursor.rowcount if cursor.rowcount >= 0 else -1)

    event.listen(store.engine, "after_cursor_execute", after)
    return counts


@pytest.mark.parametrize("in_memory", [100, 2], ids=["short-list", "long-list"])
async def test_lookups_find_the_right_entry_and_follow_changes(
    store: Store, monkeypatch: pytest.MonkeyPatch, in_memory: int
) -> None:
    monkeypatch.setattr(config_view, "SUPPRESSIONS_IN_MEMORY", in_memory)
    put(
        store,
        Suppression("Trap@Example.com", ADDRESS, 551, "5.1.1", "spam trap"),
        Suppression("example.com", DOMAIN, 550, "5.7.1", "whole domain"),
        Suppression("other.test", DOMAIN, 552),
        Suppression("x@third.test", ADDRESS, 553),
    )
    clock = ManualClock()
    view = ConfigView(store, clock, ttl=1.0)

    async def code(address: str) -> int | None:
        found = await view.suppression(address, await view.delivery_controls())
        return None if found is None else found.code

    controls = await view.delivery_controls()
    assert controls.all_suppressions is (in_memory == 100)
    assert len(controls.suppressions) == (4 if in_memory == 100 else 0)  # never read whole
    assert await code("trap@EXAMPLE.COM") == 551  # the address's own entry wins
    assert await code("someone@example.com") == 550  # else its domain's
    assert await code("a@Other.Test.") == 552
    assert await code("x@third.test") == 553
    assert await code("y@third.test") is None
    assert await code("a@sub.example.com") is None  # a domain entry is that domain only

    with store.write() as conn:
        SuppressionRepository(conn).remove("trap@example.com")
    put(store, Suppression("y@third.test", ADDRESS, 554))
    assert await code("y@third.test") is None  # within the second: as it was
    clock.advance(1.0)
    assert await code("trap@example.com") == 550  # now only the domain's entry
    assert await code("y@third.test") == 554


async def test_a_long_list_costs_a_query_only_to_recipients_it_may_suppress(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(config_view, "SUPPRESSIONS_IN_MEMORY", 10)
    put(store, *(Suppression(f"user{i}@big.test", ADDRESS, 550) for i in range(50)))
    rows = suppression_rows_read(store)
    clock = ManualClock()
    view = ConfigView(store, clock, ttl=1.0)
    controls = await view.delivery_controls()
    assert not controls.all_suppressions
    assert len(rows) == 2  # the first 11 entries, then every key (once)
    found = [await view.suppression(f"user{i}@big.test", controls) for i in range(0, 50, 5)]
    assert [entry is not None and entry.code for entry in found] == [550] * 10
    assert await view.suppression("user5@big.test", controls) is not None  # cached
    for n in range(100):  # recipients no key of the list names: no query at all
        assert await view.suppression(f"nobody{n}@elsewhere.test", controls) is None
    assert len(rows) == 2 + 10
    if store.engine.dialect.name == "postgresql":  # SQLite's cursors do not count rows
        assert rows[:2] == [11, 50] and max(rows[2:]) <= 2

    put(store, Suppression("late@big.test", ADDRESS, 551))
    clock.advance(1.0)
    controls = await view.delivery_controls()  # reads only the keys added since
    entry = await view.suppression("late@big.test", controls)
    assert entry is not None and entry.code == 551
    if store.engine.dialect.name == "postgresql":
        assert rows[-3] == 11 and rows[-2] == 51  # within LOOKBACK of the last key seen
