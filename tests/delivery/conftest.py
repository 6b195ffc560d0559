"""A running data plane (SMTP injection, spool, delivery engine) inside the test's event
loop, on the ``store`` fixture (SQLite and PostgreSQL), plus helpers to inject mail with a
real SMTP client and to wait for what a peer observed."""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import TEST_SECRET
from tests.free_ports import free_port
from tests.peers.dns import DnsmasqServer, DnsZone
from vmta.api.app import create_app
from vmta.api.ports import ApiPorts
from vmta.delivery.engine.delivery_engine import EngineSettings
from vmta.domain.attempts.retry_schedule import RetrySchedule
from vmta.domain.config.credential import hash_secret
from vmta.domain.config.virtual_mta import (
    DeliverThrough,
    Distribution,
    IpAddress,
    Limits,
    RandomizationType,
    Ref,
    RelayServer,
    RoutingRule,
    VirtualMta,
)
from vmta.runtime.data_plane import DataPlane
from vmta.runtime.data_plane_settings import DataPlaneSettings
from vmta.runtime.server import ApiServer, bind_listener
from vmta.runtime.settings import Listen
from vmta.store.credentials import CredentialRepository
from vmta.store.store import Store
from vmta.store.virtual_mtas import VirtualMtaRepository

FAST = EngineSettings(
    retry=RetrySchedule(backoff=(0.3,), max_lifetime=3600),
    idle_timeout=0.5,
    poll_interval=0.1,
    failure_delay=0.5,
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
        return self.plane.spool.inspector.message(queue_id)


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


@contextlib.asynccontextmanager
async def api_client(plane: RunningPlane) -> AsyncIterator[httpx.AsyncClient]:
    """The API of ``plane``'s process on a free port, and a client with the test's
    credential."""
    app = create_app(ApiPorts(plane.store, data_plane=plane.plane.api_hooks()))
    sock = bind_listener(Listen("127.0.0.1", 0), "API")
    async with (
        ApiServer(app, sock),
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{sock.getsockname()[1]}",
            headers={"Authorization": f"Bearer {TEST_SECRET}"},
            timeout=30,
        ) as client,
    ):
        yield client


@pytest.fixture
async def plane_factory(store: Store, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    started: list[DataPlane] = []

    async def make(**settings: Any) -> RunningPlane:
        engine = settings.pop("engine", FAST)
        clock = settings.pop("clock", None)  # a tests/manual_clock.ManualClock, or real time
        # Every MX host of these tests is a sink on loopback, published by dnsmasq: allowed
        # here, as production refuses them (domain/paths/mail_loops.py). A test of the refusal
        # passes mx_allow_loopback=False.
        settings.setdefault("mx_allow_loopback", True)
        config = DataPlaneSettings(hostname="vmta.test", engine=engine, **settings)
        data_dir = tmp_path / f"plane{len(started)}"
        data_dir.mkdir()
        with store.write() as conn:
            CredentialRepository(conn).put(SUBMIT_LOGIN[0], hash_secret(SUBMIT_LOGIN[1]), "submit")
        plane = DataPlane(store, config, data_dir, clock=clock)
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
# SMTP AUTH takes submit credentials (contract §4); plane_factory creates this one.
SUBMIT_LOGIN = ("submitter", "vmta_submit-secret-0123456789abcdefghijklmnopqrstuv")


# ---- a small world of domains: dnsmasq publishing MX hosts that are sinks ----------


def insert(plane: RunningPlane, record: VirtualMta) -> int:
    with plane.store.write() as conn:
        repo = VirtualMtaRepository(conn)
        return repo.insert(repo.prepare(record, own_id=None))


def update(plane: RunningPlane, vmta_id: int, **changes: Any) -> None:
    with plane.store.write() as conn:
        repo = VirtualMtaRepository(conn)
        record = repo.get(vmta_id)
        assert record is not None
        for key, value in changes.items():
            setattr(record, key, value)
        repo.update(vmta_id, repo.prepare(record, own_id=vmta_id))
    plane.plane.config.invalidate()


def ip_vmta(name: str, ip: str = "127.0.0.2", **changes: Any) -> IpAddress:
    return IpAddress(name=name, ip=ip, hostname=f"{name}.vmta.test", **changes)


def rule(name: str, kind: RandomizationType, *weights: tuple[str, float]) -> RoutingRule:
    return RoutingRule(
        name=name,
        default=Distribution(
            kind, [DeliverThrough(Ref(name=target), weight) for target, weight in weights]
        ),
    )


def message(selector: str | None, subject: str = "hello") -> str:
    head = f"X-GreenArrow-MtaID: {selector}\r\n" if selector else ""
    return f"{head}From: sender@src.test\r\nSubject: {subject}\r\n\r\nbody\r\n"


@pytest.fixture
def mx_port() -> int:
    """The one port every MX sink of a test listens on (VMTA_DELIVERY_PORT)."""
    return free_port()


@pytest.fixture
async def world(plane_factory: Any, dnsmasq: DnsmasqServer, sink_factory: Any, mx_port: int) -> Any:
    """dnsmasq publishing a few domains whose MX hosts are sinks on 127.0.0.2x, and a data
    plane that resolves through it and delivers to ``mx_port``."""
    zone = (
        DnsZone()
        .mx("a.test", "mx1.a.test", 10)
        .mx("a.test", "mx2.a.test", 20)
        .host("mx1.a.test", "127.0.0.20")
        .host("mx2.a.test", "127.0.0.21")
        .mx("b.a.test", "mx1.a.test", 10)
        .mx("c.test", "mx.c.test", 10)
        .host("mx.c.test", "127.0.0.23")
        .mx("src.test", "mx.src.test", 10)
        .host("mx.src.test", "127.0.0.22")
        .null_mx("nullmx.test")
        .host("nomx.test", "127.0.0.24")  # no MX: its address is the implicit MX
    )
    dnsmasq.start(zone)
    sinks = {
        ip: sink_factory(host=ip, port=mx_port)
        for ip in ("127.0.0.20", "127.0.0.21", "127.0.0.22", "127.0.0.23", "127.0.0.24")
    }
    plane: RunningPlane = await plane_factory(
        dns_servers=(dnsmasq.address,), delivery_port=mx_port, recheck=0.3
    )
    return plane, sinks


@dataclass(frozen=True)
class ExternalProxy:
    """A real proxy an external MTA tunnels through, and the address a sink sees."""

    protocol: str  # "socks" (microsocks) or "http" (tinyproxy)
    port: int
    egress_ip: str


@pytest.fixture(params=["socks", "http"])
def external_proxy(request: pytest.FixtureRequest, mx_port: int) -> ExternalProxy:
    """Each test that uses this runs through microsocks (SOCKS5) and tinyproxy (CONNECT)."""
    if request.param == "socks":
        proxy = request.getfixturevalue("microsocks")
    else:
        proxy = request.getfixturevalue("tinyproxy_factory")([mx_port])
    return ExternalProxy(request.param, proxy.port, proxy.egress_ip)
