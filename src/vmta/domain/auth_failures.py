"""Slowing down password guessing: how long to wait before answering the next SMTP AUTH
attempt from a client that keeps failing (the rule of thumb of Postfix's anvil and
smtpd_error_sleep_time, per client address).

The first ``free`` failures cost nothing (a typo); after that each attempt waits
``base`` seconds, doubling per further failure up to ``ceiling``. The wait comes before
the check, for right and wrong secrets alike, so a fast answer never tells a guesser it
guessed right. A success forgets the client's failures; so do ``forget_after`` seconds
without one. At most ``max_clients`` addresses are remembered (the oldest go first), so a
flood of addresses cannot grow memory without bound.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class _Record:
    failures: int
    last: float


class FailureDelays:
    def __init__(
        self,
        *,
        free: int = 3,
        base: float = 1.0,
        ceiling: float = 30.0,
        forget_after: float = 900.0,
        max_clients: int = 10_000,
    ) -> None:
        self.free = free
        self.base = base
        self.ceiling = ceiling
        self.forget_after = forget_after
        self.max_clients = max_clients
        self._records: OrderedDict[str, _Record] = OrderedDict()

    def delay(self, client: str, now: float) -> float:
        """Seconds to wait before checking ``client``'s next attempt."""
        record = self._records.get(client)
        if record is None:
            return 0.0
        if now - record.last > self.forget_after:
            del self._records[client]
            return 0.0
        extra = record.failures - self.free
        if extra < 0:
            return 0.0
        return min(self.ceiling, self.base * 2.0 ** min(extra, 64))

    def failed(self, client: str, now: float) -> None:
        record = self._records.pop(client, None)
        if record is None or now - record.last > self.forget_after:
            record = _Record(0, now)
        record.failures += 1
        record.last = now
        self._records[client] = record  # most recent last
        while len(self._records) > self.max_clients:
            self._records.popitem(last=False)

    def succeeded(self, client: str) -> None:
        self._records.pop(client, None)
