"""The order tests/slow_first.py gives xdist's workers: the slow tests at the heads of the
shares worksteal hands out, balanced, a marked module in one piece, nothing lost."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import pytest

from tests.slow_first import share_sizes, slow_first


@dataclass
class FakeItem:
    nodeid: str
    seconds: float | None = None
    module: Any = field(default_factory=lambda: SimpleNamespace(pytestmark=[]))

    def get_closest_marker(self, name: str) -> pytest.Mark | None:
        for mark in self.module.pytestmark:
            if mark.name == name:
                return cast(pytest.Mark, mark)
        if self.seconds is None:
            return None
        return cast(pytest.Mark, pytest.mark.slow(self.seconds).mark)


def ids(items: list[Any]) -> list[str]:
    return [item.nodeid for item in items]


def test_share_sizes_are_worksteals_first_split() -> None:
    assert share_sizes(10, 2) == [5, 5]
    assert share_sizes(11, 2) == [5, 6]
    assert share_sizes(10, 3) == [3, 3, 4]


def test_slow_tests_head_the_shares_balanced_longest_first() -> None:
    items = [FakeItem(f"t{n}") for n in range(8)]
    items[2].seconds = 10
    items[5].seconds = 30
    items[7].seconds = 15
    ordered = slow_first(cast(list[pytest.Item], items), 2)
    assert sorted(ids(ordered)) == sorted(ids(items))  # nothing lost, nothing twice
    # Share one: the 30 s test; share two: 15 s then 10 s (45 s against 25 s is worse).
    assert ids(ordered) == ["t5", "t0", "t1", "t3", "t7", "t2", "t4", "t6"]


def test_a_marked_module_stays_in_one_piece() -> None:
    module = SimpleNamespace(pytestmark=[pytest.mark.slow(40).mark])
    items = [FakeItem("a.py::x"), FakeItem("m.py::one", module=module)]
    items += [FakeItem("m.py::two", module=module), FakeItem("b.py::y", seconds=20)]
    items += [FakeItem(f"c.py::{n}") for n in range(4)]
    ordered = ids(slow_first(cast(list[pytest.Item], items), 2))
    assert ordered[:2] == ["m.py::one", "m.py::two"]
    assert ordered[4] == "b.py::y"


def test_without_slow_tests_the_order_is_kept() -> None:
    items = [FakeItem(f"t{n}") for n in range(5)]
    assert ids(slow_first(cast(list[pytest.Item], items), 2)) == ids(items)
