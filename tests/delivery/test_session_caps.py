"""Session caps on the injection listener, with many real sockets (bounded): over the
overall or the per-client cap a connection gets 421 4.7.0 and is closed; under stress
(80% of the overall cap) idle sessions get the short timeout."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.delivery.conftest import RunningPlane
from tests.peers.raw_smtp import RawSmtp
from vmta.smtp.session_registry import SessionCaps


@contextlib.contextmanager
def sessions(port: int, sources: list[str]) -> Iterator[list[tuple[RawSmtp, int, str]]]:
    """One connection per source address; each with its greeting's code and text."""
    opened: list[tuple[RawSmtp, int, str]] = []
    try:
        for source in sources:
            client = RawSmtp(port, source=source)
            greeting = client.read()
            opened.append((client, greeting.code, greeting.text))
        yield opened
    finally:
        for client, _, _ in opened:
            client.close()


async def test_per_client_and_overall_caps(plane_factory: Any) -> None:
    caps = SessionCaps(max_sessions=12, max_per_client=4, stress_timeout=300.0)
    plane: RunningPlane = await plane_factory(session_caps=caps)

    def run() -> None:
        # Five from one address: the fifth is over the per-client cap.
        with sessions(plane.smtp_port, ["127.0.0.1"] * 5) as first:
            assert [code for _, code, _ in first] == [220, 220, 220, 220, 421]
            refused = first[-1]
            assert refused[2].split()[0] == "4.7.0"
            assert refused[0].closed_by_server()
            # Other addresses still get in, up to the overall cap of 12 (4 taken).
            others = [f"127.0.0.{n}" for n in range(3, 12)]  # 9 more
            with sessions(plane.smtp_port, others) as second:
                codes = [code for _, code, _ in second]
                assert codes == [220] * 8 + [421], codes
                assert "4.7.0" in second[-1][2]
        # Once they are gone, there is room again.
        with sessions(plane.smtp_port, ["127.0.0.1"] * 4) as again:
            assert [code for _, code, _ in again] == [220] * 4

    await asyncio.to_thread(run)


async def test_idle_sessions_time_out_sooner_under_stress(plane_factory: Any) -> None:
    caps = SessionCaps(max_sessions=10, max_per_client=10, timeout=300.0, stress_timeout=0.5)
    plane: RunningPlane = await plane_factory(session_caps=caps)
    registry = plane.plane.listener.sessions if plane.plane.listener else None
    assert registry is not None

    def run() -> None:
        with sessions(plane.smtp_port, ["127.0.0.1"] * 3) as calm:
            assert all(code == 220 for _, code, _ in calm)
            assert registry.idle_timeout() == 300.0  # 3 of 10: no stress
        # 8 of 10 is the stress threshold: idle sessions are closed after 0.5 s (the
        # wait is bounded by the client's read timeout, nothing is timed).
        with sessions(plane.smtp_port, ["127.0.0.1"] * 8) as stressed:
            assert all(code == 220 for _, code, _ in stressed)
            assert all(client.closed_by_server() for client, _, _ in stressed)

    await asyncio.to_thread(run)


@pytest.mark.one_database  # the listener's timer: no database takes part
async def test_a_session_that_keeps_talking_outlives_its_idle_timeout(plane_factory: Any) -> None:
    """The idle timer is moved, not re-armed, by each command (listener._reset_timeout):
    when it fires on a session that spoke meanwhile, it waits again for the rest."""
    caps = SessionCaps(max_sessions=10, max_per_client=10, timeout=1.0, stress_timeout=1.0)
    plane: RunningPlane = await plane_factory(session_caps=caps)

    def run() -> None:
        with sessions(plane.smtp_port, ["127.0.0.1"]) as [(client, code, _)]:
            assert code == 220
            for _ in range(8):  # 2 s of commands, one every quarter of the 1 s timeout
                assert client.command("NOOP").code == 250
                time.sleep(0.25)
            assert client.command("NOOP").code == 250
            assert client.closed_by_server()  # then silent: closed after the timeout

    await asyncio.to_thread(run)
