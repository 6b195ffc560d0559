"""A data plane on a manual clock with a fake transport (httpx's MockTransport idea): the
real spool (SQLite), router, scheduler, dispatcher and recorder, but connections that are
functions the test scripts, and time that moves only when the test moves it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TEST_SECRET
from tests.manual_clock import ManualClock
from tests.migrated_templates import MigratedTemplates
from vmta.delivery.engine.delivery_engine import EngineSettings
from vmta.delivery.throttles.host_throttles import HostThrottles
from vmta.domain.attempts.delivery_outcome import ReplyLine
from vmta.domain.attempts.retry_schedule import RetrySchedule
from vmta.domain.attempts.transport_port import (
    ConnectFailed,
    ConversationBroken,
    TransactionReplies,
)
from vmta.domain.config.credential import hash_secret
from vmta.domain.config.virtual_mta import Limits, Ref, RelayServer
from vmta.domain.message.arrival import Arrival
from vmta.domain.paths.egress_path import EgressPath
from vmta.runtime.data_plane import DataPlane
from vmta.runtime.data_plane_settings import DataPlaneSettings
from vmta.store.credentials import CredentialRepository
from vmta.store.store import Store
from vmta.store.virtual_mtas import VirtualMtaRepository

OK = ReplyLine(250, "2.0.0 ok")

ENGINE = EngineSettings(
    retry=RetrySchedule(backoff=(60.0,), max_lifetime=3600.0),
    idle_timeout=5.0,
    poll_interval=1.0,
    failures_before_delay=3,
    failure_delay=60.0,
    max_connection_rate=10.0,
)


@dataclass
class Sent:
    at: float
    recipients: list[str]
    data: bytes


@dataclass
class FakeTransport:
    """Scripted connections. ``refuse``: every open fails as a greeting that hangs up.
    ``idle_close``: the peer closes a session idle longer than this many seconds.
    ``during_send``: awaited inside each send, before it is answered; ``during_reset``,
    inside each RSET. ``broken_resets``: the next this many RSETs find the session closed
    by the peer."""

    clock: ManualClock
    refuse: bool = False
    idle_close: float | None = None
    during_send: Callable[[bytes], Any] | None = None
    rcpt_reply: ReplyLine = OK  # the answer to every RCPT (a 5xx fails the recipients)
    during_reset: Callable[[], Any] | None = None
    broken_resets: int = 0
    opens: list[float] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    broken: int = 0
    open_now: int = 0
    most_open: int = 0

    async def open(self, path: EgressPath) -> FakeConversation:
        self.opens.append(self.clock.now())
        if self.refuse:
            raise ConnectFailed(f"greeting from {path.destination_host} failed: connection closed")
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        return FakeConversation(self)


class FakeConversation:
    remote_ip: str | None = "192.0.2.25"
    remote_host = "fake.test"

    def __init__(self, transport: FakeTransport) -> None:
        self.transport = transport
        self.last = transport.clock.now()
        self.closed = False

    def _use(self) -> None:
        now = self.transport.clock.now()
        limit = self.transport.idle_close
        if self.closed or (limit is not None and now - self.last > limit):
            if not self.closed:
                self.closed = True
                self.transport.open_now -= 1
            self.transport.broken += 1
            raise ConversationBroken("the server closed an idle connection")
        self.last = now

    async def send(
        self, mail_from: str, recipients: Sequence[str], data: bytes
    ) -> TransactionReplies:
        self._use()
        if self.transport.during_send is not None:
            await self.transport.during_send(data)
        self.transport.sent.append(Sent(self.transport.clock.now(), list(recipients), data))
        rcpt = self.transport.rcpt_reply
        data_reply = OK if rcpt.code < 300 else None  # no DATA when every RCPT is refused
        return TransactionReplies(OK, [rcpt] * len(recipients), data_reply)

    async def reset(self) -> None:
        if self.transport.during_reset is not None:
            await self.transport.during_reset()
        if self.transport.broken_resets > 0:
            self.transport.broken_resets -= 1
            await self.quit()
        self._use()

    async def quit(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.open_now -= 1


@dataclass
class Harness:
    plane: DataPlane
    clock: ManualClock
    transport: FakeTransport
    store: Store
    inflight: int = 0  # calls into the spool and the configuration not yet answered

    def count_calls(self) -> None:
        """Count the engine's calls that run on threads (spool, configuration), so that
        ``settle`` can wait until the engine has done everything the clock allows."""
        for target, names in (
            (self.plane.gateway, ("accept", "record", "claim_due", "body", "renew_leases")),
            (self.plane.config, ("_cached",)),
        ):
            for name in names:
                setattr(target, name, self._counted(getattr(target, name)))

    def _counted(self, call: Callable[..., Any]) -> Callable[..., Any]:
        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.inflight += 1
            try:
                return await call(*args, **kwargs)
            finally:
                self.inflight -= 1

        return counted

    async def settle(self) -> None:
        """Let the engine run until nothing is pending on a thread for a few turns of
        the event loop (bounded)."""
        quiet = 0
        for _ in range(5000):
            await asyncio.sleep(0.0005)
            quiet = quiet + 1 if self.inflight == 0 else 0
            if quiet >= 4:
                return

    def add_relay(self, name: str, limits: Limits) -> int:
        relay = RelayServer(
            name=name,
            source_ip="127.0.0.2",
            source_hostname="out.vmta.test",
            destination_hostname="relay.test",
            destination_port=2525,
            username=None,
            password=None,
            throttle_limits=limits,
        )
        with self.store.write() as conn:
            repo = VirtualMtaRepository(conn)
            relay_id = repo.insert(repo.prepare(relay, own_id=None))
            repo.set_default(Ref(name=name))
        self.plane.config.invalidate()
        return relay_id

    async def inject(self, count: int, size: int = 200, sender: str = "s@src.test") -> list[str]:
        ids = []
        for i in range(count):
            data = f"Subject: m{i}\r\n\r\n".encode() + b"x" * size + b"\r\n"
            arrival = Arrival(sender, [f"r{i}@dest.test"], data, "127.0.0.1", "c", None, False)
            ids.append(await self.plane.intake.accept(arrival))
        await self.settle()
        return ids

    async def run_for(self, seconds: float, step: float = 0.1) -> None:
        """Move the clock ``seconds`` ahead in ``step``s, letting the engine (and the
        spool's thread) work after each step."""
        for _ in range(round(seconds / step)):
            self.clock.advance(step)
            await self.settle()

    async def until(self, check: Callable[[], Any], seconds: float, step: float = 0.1) -> Any:
        """Move the clock until ``check()`` holds; at most ``seconds`` of clock time."""
        for _ in range(round(seconds / step)):
            value = check()
            if value:
                return value
            await self.run_for(step, step)
        raise AssertionError(f"not reached within {seconds} s of clock time: {check}")

    def recipients(self) -> list[dict[str, Any]]:
        with self.store.read() as conn:
            rows = conn.exec_driver_sql(
                "select id, state, attempts, next_attempt_at, lease_owner, waiting_reason"
                " from recipients order by id"
            )
            return [dict(row._mapping) for row in rows]

    def attempts(self) -> list[dict[str, Any]]:
        with self.store.read() as conn:
            rows = conn.exec_driver_sql("select recipient_id, outcome, reply from attempts")
            return [dict(row._mapping) for row in rows]


@pytest.fixture
async def harness_factory(
    tmp_path: Path, migrated_templates: MigratedTemplates
) -> AsyncIterator[Callable[..., Any]]:
    planes: list[DataPlane] = []

    async def make(*, host_throttles: bool = False, **engine_changes: Any) -> Harness:
        """``host_throttles``: limits shared with other processes through files, as
        under ``VMTA_WORKERS`` > 1 (delivery/throttles/host_throttles.py)."""
        url = f"sqlite:///{tmp_path / f'vmta{len(planes)}.db'}"
        migrated_templates.sqlite_copy(url)  # migrated once per session (tests/conftest.py)
        store = Store.open(url, migrate=False)
        with store.write() as conn:
            CredentialRepository(conn).put("admin", hash_secret(TEST_SECRET))
        clock = ManualClock()
        transport = FakeTransport(clock)
        settings = DataPlaneSettings(
            hostname="vmta.test",
            engine=replace(ENGINE, **engine_changes),
            delivery_log=False,
            mx_allow_loopback=True,  # tests' MX hosts are on loopback (domain/paths/mail_loops.py)
        )
        data_dir = tmp_path / f"data{len(planes)}"
        data_dir.mkdir()
        throttles = HostThrottles(clock, data_dir / "throttles") if host_throttles else None
        plane = DataPlane(
            store, settings, data_dir, clock=clock, transport=transport, throttles=throttles
        )
        harness = Harness(plane, clock, transport, store)
        harness.count_calls()
        await plane.start(None)
        planes.append(plane)
        return harness

    yield make
    for plane in planes:
        await plane.stop()
        plane.store.close()
