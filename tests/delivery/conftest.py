"""A running data plane (SMTP injection, spool, delivery engine) inside the test's event
loop, on the ``store`` fixture (SQLite and PostgreSQL), plus helpers to inject mail with a
real SMTP client and to wait for what a peer observed."""

from __future__ import annotations

import asyncio
import smtplib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TEST_SECRET
from vmta.delivery.engine import EngineSettings
from vmta.domain.retry_schedule import RetrySchedule
from vmta.domain.virtual_mta import Limits, Ref, RelayServer
from vmta.runtime.data_plane import DataPlane, DataPlaneSettings
from vmta.runtime.server import bind_listener
from vmta.runtime.settings import Listen
from vmta.store.store import Store
from vmta.store.virtual_mtas import VirtualMtaRepository

FAST = EngineSettings(
    retry=RetrySchedule(backoff=(0.3,), max_lifetime=3600),
    idle_timeout=0.5,
    poll_interval=0.1,
)


@dataclass
class RunningPlane:
    plane: DataPlane
    smtp_port: int
    store: Store

    def send(
        self,
        data: str | bytes,
        recipients: Sequence[str] = ("rcpt@dest.test",),
        sender: str = "sender@src.test",
        *,
        login: tuple[str, str] | None = None,
    ) -> str:
        """Inject one message over real SMTP; returns the queue id from the 250 reply."""
        with smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=30) as client:
            if login is not None:
                client.login(*login)
            client.ehlo()
            client.mail(sender)
            for rcpt in recipients:
                code, _ = client.rcpt(rcpt)
                assert code == 250, code
            code, reply = client.data(data if isinstance(data, bytes) else data.encode())
            assert code == 250, reply
            return reply.decode().rsplit(" ", 1)[-1]

    async def asend(
        self,
        data: str | bytes,
        recipients: Sequence[str] = ("rcpt@dest.test",),
        sender: str = "sender@src.test",
    ) -> str:
        return await asyncio.to_thread(self.send, data, recipients, sender)

    def add_relay(self, name: str, port: int, **changes: Any) -> int:
        relay = RelayServer(
            name=name,
            source_ip="127.0.0.2",
            source_hostname="out.vmta.test",
            destination_hostname="127.0.0.1",
            destination_port=port,
            username=None,
            password=None,
            throttle_limits=Limits(0, 0),
        )
        relay = replace(relay, **changes)
        with self.store.write() as conn:
            repo = VirtualMtaRepository(conn)
            return repo.insert(repo.prepare(relay, own_id=None))

    def set_default(self, name: str | None) -> None:
        with self.store.write() as conn:
            VirtualMtaRepository(conn).set_default(None if name is None else Ref(name=name))
        self.plane.config.invalidate()
        self.plane.engine.wake()

    def message(self, queue_id: str) -> Any:
        return self.plane.spool.message(queue_id)


async def eventually(
    check: Callable[[], Any],
    timeout: float = 20.0,  # noqa: ASYNC109 - a bound on polling, not an I/O timeout
    what: str = "",
) -> Any:
    """Wait (bounded) until ``check()`` is truthy; returns its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def plane_factory(store: Store, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    started: list[DataPlane] = []

    async def make(**settings: Any) -> RunningPlane:
        engine = settings.pop("engine", FAST)
        config = DataPlaneSettings(hostname="vmta.test", engine=engine, **settings)
        data_dir = tmp_path / f"plane{len(started)}"
        data_dir.mkdir()
        plane = DataPlane(store, config, data_dir)
        sock = bind_listener(Listen("127.0.0.1", 0), "SMTP")
        await plane.start(sock)
        started.append(plane)
        return RunningPlane(plane, sock.getsockname()[1], store)

    yield make
    for plane in started:
        await plane.stop()


@pytest.fixture
async def plane(plane_factory: Callable[..., Any]) -> RunningPlane:
    running: RunningPlane = await plane_factory()
    return running


API_LOGIN = ("admin", TEST_SECRET)
