"""Who sends through whom: redirects and routing rule entries form a directed graph
between VirtualMTAs (contract §2.4, §2.7). Delivery follows its edges, so it must stay
free of cycles, or a message would circle forever."""

from __future__ import annotations

from collections.abc import Callable, Iterable


def path_back(
    edges_of: Callable[[int], Iterable[int]], source: int, new_targets: Iterable[int]
) -> list[int] | None:
    """If giving ``source`` the outgoing edges ``new_targets`` closes a cycle, return it as
    a list of ids starting and ending with ``source``; otherwise None.

    ``edges_of(node)`` gives a node's current outgoing edges (it is called lazily, so a
    store can answer it with one indexed query per node visited); the current edges of
    ``source`` are replaced by ``new_targets``. A node pointing at itself is a cycle of length one.
    """
    parents: dict[int, int] = {}
    frontier: list[int] = []
    for target in new_targets:
        if target == source:
            return [source, source]
        if target not in parents:
            parents[target] = source
            frontier.append(target)
    while frontier:
        node = frontier.pop()
        for nxt in edges_of(node):
            if nxt == source:
                cycle = [source]
                walk = node
                while walk != source:
                    cycle.append(walk)
                    walk = parents[walk]
                cycle.append(source)
                # cycle was built backwards from the end: source, node, ..., first; fix order
                middle = cycle[1:-1]
                middle.reverse()
                return [source, *middle, source]
            if nxt not in parents and nxt != source:
                parents[nxt] = node
                frontier.append(nxt)
    return None
