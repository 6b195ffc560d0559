"""The slow tests start first, spread over the xdist workers, so that the run does not end
with one worker still busy with a long test while the other is idle.

A test (or a module, through its ``pytestmark``) marked ``slow(seconds)`` says about how
long it takes (``--durations`` on any one machine: only the order and the balance use the
figures). pytest-xdist's ``worksteal`` scheduler (scripts/test) hands each worker an equal
contiguous share of the collection at the start, and an idle worker later steals the
*tail* of a busy worker's share: so a slow test at the head of a share stays where it is
and starts at once. This plugin orders the collection that way:
the slow tests, longest first, dealt to the shares by "least loaded share first" (LPT
scheduling), each share filled up with the other tests in their usual order. A marked
module stays in one piece (its module-scoped fixtures, such as the browser, start once).

Only under xdist (every worker collects, and must compute the same order: it depends on
nothing but the collection and the number of workers); with ``-n 0`` the order is
pytest's own.
"""

from __future__ import annotations

import pytest

SLOW = "slow"
Group = tuple[float, list[pytest.Item]]  # seconds, and the items that take them


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "slow(seconds): takes about this long (a weight for the order and the balance);"
        " under xdist it starts first (tests/slow_first.py)",
    )


def _seconds(item: pytest.Item) -> float | None:
    marker = item.get_closest_marker(SLOW)
    if marker is None:
        return None
    seconds = marker.args[0] if marker.args else marker.kwargs.get("seconds")
    if not isinstance(seconds, int | float) or seconds <= 0:
        raise pytest.UsageError(f"{item.nodeid}: slow(seconds) needs a positive number")
    return float(seconds)


def _module_marked(item: pytest.Item) -> bool:
    module = getattr(item, "module", None)
    marks = getattr(module, "pytestmark", [])
    marks = marks if isinstance(marks, list) else [marks]
    return any(mark.name == SLOW for mark in marks)


def _groups(items: list[pytest.Item]) -> tuple[list[Group], list[pytest.Item]]:
    """The slow groups (seconds, items): a marked module as one group weighing its mark,
    a marked test as its own; and every other item, in order."""
    slow: dict[str, Group] = {}
    rest: list[pytest.Item] = []
    for item in items:
        seconds = _seconds(item)
        if seconds is None:
            rest.append(item)
        elif _module_marked(item):
            key = item.nodeid.split("::", 1)[0]
            slow.setdefault(key, (seconds, []))[1].append(item)
        else:
            slow[item.nodeid] = (seconds, [item])
    # Longest first; the node id breaks ties so that every worker agrees.
    ordered = sorted(slow.items(), key=lambda kv: (-kv[1][0], kv[0]))
    return [group for _, group in ordered], rest


def share_sizes(total: int, workers: int) -> list[int]:
    """The sizes of the contiguous shares worksteal hands out at the start
    (xdist/scheduler/worksteal.py: each idle node gets len(pending) // nodes_remaining)."""
    sizes = []
    left = total
    for i in range(workers):
        size = left // (workers - i)
        sizes.append(size)
        left -= size
    return sizes


def slow_first(items: list[pytest.Item], workers: int) -> list[pytest.Item]:
    groups, rest = _groups(items)
    if not groups:
        return items
    sizes = share_sizes(len(items), workers)
    heads: list[list[pytest.Item]] = [[] for _ in sizes]
    load = [0.0] * len(sizes)
    for seconds, group in groups:
        # The least loaded share with room for the whole group.
        fits = [i for i in range(len(sizes)) if len(heads[i]) + len(group) <= sizes[i]]
        if not fits:
            return [item for _, g in groups for item in g] + rest  # just slow first
        share = min(fits, key=lambda i: (load[i], i))
        heads[share].extend(group)
        load[share] += seconds
    ordered: list[pytest.Item] = []
    fillers = iter(rest)
    for share, size in enumerate(sizes):
        ordered.extend(heads[share])
        ordered.extend(next(fillers) for _ in range(size - len(heads[share])))
    return ordered


@pytest.hookimpl(trylast=True)  # after tests/conftest.py deselected the one-database twins
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:
        return
    workers = int(workerinput.get("workercount", 1))
    if workers > 1:
        items[:] = slow_first(items, workers)
