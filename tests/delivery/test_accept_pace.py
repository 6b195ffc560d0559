"""The SMTP listener takes one waiting client per turn of its event loop (not asyncio's
up to 100): with ``VMTA_WORKERS`` > 1 every process waits on one socket, and a process
that took a whole burst at once would keep it while the others idle. This is the
deterministic half of tests/e2e/test_workers.py's burst test: counted in one process,
by turns of the loop, with clients already waiting in the kernel's queue."""

from __future__ import annotations

import asyncio
import socket

import pytest

from tests.delivery.conftest import RunningPlane, eventually

pytestmark = pytest.mark.one_database  # which turn accepts: no database takes part

CLIENTS = 20
TURNS = 5


async def test_a_waiting_burst_is_taken_one_client_per_turn_of_the_loop(
    plane: RunningPlane,
) -> None:
    listener = plane.plane.listener
    assert listener is not None
    sessions = listener.sessions
    # Blocking connects complete in the kernel (the listen queue holds 1024) while this
    # coroutine keeps the loop: every client waits before the listener looks once.
    clients = [socket.create_connection(("127.0.0.1", plane.smtp_port)) for _ in range(CLIENTS)]
    try:
        assert sessions.count == 0
        for _ in range(TURNS):
            await asyncio.sleep(0)
        # asyncio's default would have taken all of them at the first turn.
        assert 1 <= sessions.count <= TURNS, sessions.count
        await eventually(lambda: sessions.count == CLIENTS, what="every client taken")
    finally:
        for client in clients:
            client.close()
