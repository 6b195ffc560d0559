"""How many claimed recipients this node holds in memory, against a bound.

Everything the engine holds costs memory: the job, its place in a ready queue. Bodies are
not held (they are read from the spool when a message goes on the wire), so the bound is
on recipients. The scheduler claims only as many as there is room for; the intake stores
a new message unclaimed when there is none, and any node's poll takes it later.
"""

from __future__ import annotations


class Occupancy:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self.peak = 0

    def room(self) -> int:
        return max(0, self.limit - self.held)

    def take(self, count: int) -> None:
        self.held += count
        self.peak = max(self.peak, self.held)

    def give_back(self, count: int) -> None:
        self.held = max(0, self.held - count)
