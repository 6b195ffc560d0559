"""The ready queues of one dispatcher, and the three ways it finds them: by egress path
(the queue a delivery joins), by throttle (the queues a freed connection slot may serve),
and by metric label (the ready-queue gauge, one per source IP).

A queue is filed under its own throttle and under every throttle of a delivery it has
held: on a site, the domains of one MX host share a queue, each domain with the limits
of its own throttle (a.test and b.a.test under [*.]a.test; the domains of one ``mx:``
rule). The dispatcher decides when queues come and go (delivery/engine/dispatcher.py);
this keeps the indexes true to that.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

from vmta.delivery.engine.ready_queue import QueuePolicy, ReadyQueue
from vmta.domain.attempts.engine_metrics import route_label
from vmta.domain.clock import Clock
from vmta.domain.paths.egress_path import EgressPath


class QueueDirectory:
    def __init__(
        self,
        policy: QueuePolicy,
        clock: Clock,
        stopping: asyncio.Event,
        throttle_unused: Callable[[str], None],
    ) -> None:
        """``throttle_unused(throttle)``: no queue is filed under it any more (the
        throttle backend may drop what it keeps for it)."""
        self._policy = policy
        self._clock = clock
        self._stopping = stopping
        self._throttle_unused = throttle_unused
        self._by_path: dict[tuple[object, ...], ReadyQueue] = {}
        self._filed: dict[ReadyQueue, set[str]] = {}  # every throttle a queue is filed under
        self._by_throttle: dict[str, set[ReadyQueue]] = {}
        self._by_label: dict[str, set[ReadyQueue]] = {}

    def __iter__(self) -> Iterator[ReadyQueue]:
        return iter(list(self._by_path.values()))

    def queue(self, path: EgressPath) -> tuple[ReadyQueue, bool]:
        """The queue of ``path`` (its newest configuration wins), and whether it is new."""
        queue = self._by_path.get(path.key)
        if queue is not None:
            queue.update(path)
            return queue, False
        queue = ReadyQueue(path, self._policy, self._clock, self._stopping)
        self._by_path[path.key] = queue
        self._filed[queue] = set()
        self.file(queue, queue.throttle)
        self._by_label.setdefault(route_label(path.route), set()).add(queue)
        return queue, True

    def file(self, queue: ReadyQueue, throttle: str) -> None:
        """``queue`` has (or had) deliveries of ``throttle``: a slot of it freed by one
        queue may serve another."""
        filed = self._filed.get(queue)
        if filed is not None and throttle not in filed:
            filed.add(throttle)
            self._by_throttle.setdefault(throttle, set()).add(queue)

    def on_throttle(self, throttle: str) -> list[ReadyQueue]:
        """The queues filed under ``throttle``."""
        return list(self._by_throttle.get(throttle, ()))

    def open_on(self, throttle: str) -> int:
        """Connections open on ``throttle`` as their queue's own throttle."""
        return sum(q.connections for q in self.on_throttle(throttle) if q.throttle == throttle)

    def remove(self, queue: ReadyQueue) -> None:
        """Drop ``queue`` from every index."""
        if self._by_path.get(queue.path.key) is queue:
            del self._by_path[queue.path.key]
        for throttle in self._filed.pop(queue, {queue.throttle}):
            siblings = self._by_throttle.get(throttle)
            if siblings is not None:
                siblings.discard(queue)
                if not siblings:
                    del self._by_throttle[throttle]
                    self._throttle_unused(throttle)
        label = route_label(queue.path.route)
        labelled = self._by_label.get(label)
        if labelled is not None:
            labelled.discard(queue)
            if not labelled:
                del self._by_label[label]

    def ready_lengths(self) -> dict[str, int]:
        """Deliveries waiting in memory by metric label (one source IP has a path per
        destination). Read at a scrape, perhaps from another thread: each ``list`` copy
        is made in one step under the interpreter lock, so the loop may go on changing
        the originals meanwhile."""
        return {
            label: sum(len(q) for q in list(queues))
            for label, queues in list(self._by_label.items())
        }
