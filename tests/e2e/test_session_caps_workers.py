"""Session caps hold for the node, whatever ``VMTA_WORKERS`` is: `vmta serve` with two
processes on one SMTP port and a cap of 10 sessions per client greets 10 of 20 real
sockets from one address and answers the others ``421 4.7.0`` at once; the greeted ones
are held by both processes (so the cap was counted across them)."""

from __future__ import annotations

import socket
from collections import Counter

import pytest

from tests.e2e.serve_process import ServeFactory, wait_until
from tests.e2e.test_workers import accepting_processes, socket_owners, worker_pids

pytestmark = pytest.mark.one_database  # which process accepts: no database takes part


def no_sessions(port: int) -> bool:
    """No connection accepted on ``port`` is still open or closing on vmta's side
    (/proc/net/tcp states ESTABLISHED and CLOSE_WAIT): its session counts are released."""
    with open("/proc/net/tcp", encoding="ascii") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            local, remote, state = fields[1], fields[2], fields[3]
            accepted_here = int(local.split(":")[1], 16) == port and remote[-4:] != "0000"
            if accepted_here and state in ("01", "08"):
                return False
    return True


def test_two_workers_hold_one_per_client_cap_of_10(serve: ServeFactory) -> None:
    serve.configure(
        VMTA_WORKERS="2",
        VMTA_SMTP_MAX_SESSIONS="20",
        VMTA_SMTP_MAX_SESSIONS_PER_CLIENT="10",
    )
    server = serve.start()
    assert server.proc is not None
    wait_until(lambda: len(worker_pids(server)) == 1, 60, "one worker process")
    wait_until(lambda: len(accepting_processes(server)) == 1, 60, "the worker accepting")
    processes = {server.proc.pid, *worker_pids(server)}
    clients: list[socket.socket] = []
    try:
        # Which process accepts is the kernel's and the scheduler's choice: on a busy
        # machine one may take all 20. Then the cap says nothing about counting across
        # processes, and the burst is tried again (at most five times).
        for _ in range(5):
            for client in clients:
                client.close()
            clients = []
            wait_until(lambda: no_sessions(server.smtp_port), 30, "the last burst's sessions ended")
            for _ in range(20):  # all connected before any greeting is read
                clients.append(
                    socket.create_connection(("127.0.0.1", server.smtp_port), timeout=30)
                )
            greetings = [client.recv(512) for client in clients]
            greeted = [c for c, g in zip(clients, greetings, strict=True) if g.startswith(b"220")]
            refused = [g for g in greetings if not g.startswith(b"220")]
            assert len(greeted) == 10, greetings
            assert len(refused) == 10, refused
            assert all(g.startswith(b"421 4.7.0 ") for g in refused), refused
            owners = socket_owners(processes, server.smtp_port)
            held = Counter(owners[c.getsockname()[1]] for c in greeted)
            if set(held) == processes:
                break
        assert set(held) == processes, held  # both processes hold sessions of the cap
        # Room again once sessions end, on either process.
        for client in greeted[:3]:
            client.sendall(b"QUIT\r\n")
            client.recv(512)
            client.close()
        clients = [c for c in clients if c not in greeted[:3]]

        def greeted_again() -> bool:
            probe = socket.create_connection(("127.0.0.1", server.smtp_port), timeout=30)
            clients.append(probe)
            return probe.recv(512).startswith(b"220")

        wait_until(greeted_again, 30, "a session once others ended", step=0.2)
    finally:
        for client in clients:
            client.close()
    assert server.stop() == 0
