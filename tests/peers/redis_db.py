"""The real Redis at 127.0.0.1:6379 for tests, on a database number of its own, and a
fresh key namespace per test: the test's keys (its namespace and any derived from it,
``f"{namespace}-a"``) are deleted afterwards, and nothing else, so tests running at once
(pytest-xdist workers, other checkouts) never touch each other's keys.

Without a reachable Redis the test is skipped with the reason, except under CI
(``CI=true``), where it fails.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis

from tests.conftest import skip_or_fail

# This suite's database number on the shared Redis. Not 10: checkouts from before the
# namespace clean-up flush database 10 around each of their tests, which would wipe a
# running test's keys here.
REDIS_DB = 11
REDIS_URL = os.environ.get("VMTA_TEST_REDIS_URL", f"redis://127.0.0.1:6379/{REDIS_DB}")


@dataclass(frozen=True)
class RedisDb:
    url: str
    namespace: str  # unique per test: keys of two tests never meet

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)


@pytest.fixture
def redis_db() -> Iterator[RedisDb]:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        skip_or_fail(f"Redis not reachable at {REDIS_URL}: {exc}")
    namespace = f"t{uuid.uuid4().hex[:10]}"
    try:
        yield RedisDb(REDIS_URL, namespace)
    finally:
        keys = list(client.scan_iter(match=f"{namespace}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
