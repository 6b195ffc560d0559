"""An idle session closed by the stress timeout is told so: ``421 4.4.2`` before the
close (RFC 5321 §3.8), not a silent hang-up."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.delivery.conftest import RunningPlane
from tests.delivery.test_session_caps import sessions
from vmta.smtp.session_registry import SessionCaps

pytestmark = pytest.mark.one_database  # the listener's timer: no database takes part


async def test_the_stress_timeout_says_421_before_closing(plane_factory: Any) -> None:
    caps = SessionCaps(max_sessions=10, max_per_client=10, timeout=300.0, stress_timeout=0.5)
    plane: RunningPlane = await plane_factory(session_caps=caps)

    def run() -> None:
        # 8 of 10 is the stress threshold: idle sessions are closed after 0.5 s (the
        # wait is bounded by the client's read timeout, nothing is timed).
        with sessions(plane.smtp_port, ["127.0.0.1"] * 8) as stressed:
            assert all(code == 220 for _, code, _ in stressed)
            goodbyes = [client.read() for client, _, _ in stressed]
            assert all(g.code == 421 and g.text.startswith("4.4.2 vmta.test") for g in goodbyes)
            assert all(client.closed_by_server() for client, _, _ in stressed)

    await asyncio.to_thread(run)
