"""The real Redis at 127.0.0.1:6379 for tests, on a database number of its own (only that
one is flushed), and a fresh key namespace per test.

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

REDIS_DB = 10  # this suite's database number on the shared Redis; nothing else is touched
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
    client.flushdb()
    try:
        yield RedisDb(REDIS_URL, f"t{uuid.uuid4().hex[:10]}")
    finally:
        client.flushdb()
        client.close()
