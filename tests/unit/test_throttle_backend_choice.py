"""Which throttle backend the settings give, and the warning a PostgreSQL node without
Redis logs (its limits hold per node, not for the cluster)."""

from __future__ import annotations

import logging

import pytest

from tests.manual_clock import ManualClock
from vmta.delivery.throttles.redis_throttles import RedisThrottles
from vmta.delivery.throttles.throttle_backend import LocalThrottles
from vmta.runtime.settings import Settings, SettingsError, load_settings
from vmta.runtime.throttle_wiring import throttle_backend

PG = "postgresql://vmta@db.test/vmta"
PER_NODE = "throttles are per node"


async def test_redis_url_gives_redis_throttles_with_the_namespace_and_lease() -> None:
    settings = load_settings(
        environ={
            "VMTA_REDIS_URL": "redis://127.0.0.1:6379/3",
            "VMTA_REDIS_NAMESPACE": "eu-1",
            "VMTA_REDIS_LEASE": "12",
        }
    )
    backend = throttle_backend(settings, ManualClock(), node="n1")
    try:
        assert isinstance(backend, RedisThrottles)
        assert backend.namespace == "eu-1"
        assert backend.lease_seconds == 12.0
    finally:
        await backend.close()


def test_postgresql_without_redis_warns_that_throttles_are_per_node(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="vmta.runtime.throttle_wiring"):
        backend = throttle_backend(Settings(database_url=PG), ManualClock())
    assert isinstance(backend, LocalThrottles)
    assert any(PER_NODE in r.message for r in caplog.records)


def test_sqlite_without_redis_is_one_node_and_says_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="vmta.runtime.throttle_wiring"):
        backend = throttle_backend(Settings(), ManualClock())
    assert isinstance(backend, LocalThrottles)
    assert not any(PER_NODE in r.message for r in caplog.records)


async def test_redis_on_postgresql_logs_no_per_node_warning_and_never_the_url(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = Settings(database_url=PG, redis_url="redis://:S3cret-pw@127.0.0.1:6379/0")
    with caplog.at_level(logging.INFO):
        backend = throttle_backend(settings, ManualClock())
    await backend.close()
    assert not any(PER_NODE in r.message for r in caplog.records)
    assert all("S3cret-pw" not in r.getMessage() for r in caplog.records)
    assert "S3cret-pw" not in repr(settings)


@pytest.mark.parametrize("url", ["http://redis.test/", "127.0.0.1:6379", "redis.test"])
def test_a_redis_url_without_a_redis_scheme_is_refused(url: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ={"VMTA_REDIS_URL": url})
    assert "VMTA_REDIS_URL must be a redis://" in str(caught.value)


@pytest.mark.parametrize("namespace", ["has space", "x" * 65, "é"])
def test_a_bad_namespace_is_refused(namespace: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ={"VMTA_REDIS_NAMESPACE": namespace})
    assert "VMTA_REDIS_NAMESPACE must be 1 to 64" in str(caught.value)


def test_the_lease_must_be_positive() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ={"VMTA_REDIS_LEASE": "0"})
    assert "VMTA_REDIS_LEASE" in str(caught.value)
