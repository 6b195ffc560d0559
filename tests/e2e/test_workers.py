"""`vmta serve` with ``VMTA_WORKERS`` (runtime/worker_pool.py): several processes accept on
one SMTP port and deliver from one spool, on SQLite and PostgreSQL, with the throttles held
together through files of the data directory (no Redis).

What is asserted is what the sink saw: every message once (at most the one on the wire
when a worker was killed twice), never more connections open than the relay server's
``max_concurrent_connections`` summed over every process, and pacing that holds over
them all. A worker killed with SIGKILL is started again and its work delivered; stopping
`vmta serve` stops every worker.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.serve_process import (
    ServeFactory,
    ServeProcess,
    relay_to,
    send_subjects,
    subjects_seen,
    wait_until,
)
from tests.peers.sink import RecordingSink

DELIVERY_DEADLINE = 180.0  # bounds a hang on a loaded machine; measures nothing


def inject(port: int, subjects: list[str], sessions: int) -> None:
    with ThreadPoolExecutor(max_workers=sessions) as pool:
        for future in [
            pool.submit(send_subjects, port, subjects[i::sessions]) for i in range(sessions)
        ]:
            future.result()


def worker_pids(server: ServeProcess) -> set[int]:
    """The worker processes of this `vmta serve` (its children running worker_process)."""
    assert server.proc is not None
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as stat:
                parent = int(stat.read().rpartition(")")[2].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read()
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        if parent == server.proc.pid and b"vmta.runtime.worker_process" in command:
            found.add(int(entry))
    return found


def summed(server: ServeProcess, name: str, **labels: str) -> float:
    """A metric of ``/metrics`` summed over the label values not given."""
    response = server.api().get("/metrics")
    assert response.status_code == 200, response.text
    total = 0.0
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


def accepting_processes(server: ServeProcess) -> set[str]:
    """Which processes logged an accepted message: the parent's lines carry no tag."""
    tags = set()
    for line in server.log().splitlines():
        if "accepting and delivering" in line and "[worker " in line:
            tags.add(line.split("[worker ")[1].split("]")[0])
    return tags


@pytest.mark.slow(16)
def test_workers_share_the_port_the_spool_and_the_connection_limit(
    serve: ServeFactory, sink: RecordingSink
) -> None:
    serve.configure(VMTA_WORKERS="3", VMTA_CONNECTION_IDLE_TIMEOUT="1")
    server = serve.start()
    wait_until(lambda: len(worker_pids(server)) == 2, 60, "two worker processes")
    wait_until(lambda: len(accepting_processes(server)) == 2, 60, "both workers accepting")
    limit = 2
    relay_to(server, sink.port, connections=limit)
    subjects = [f"m{i}" for i in range(90)]

    inject(server.smtp_port, subjects, sessions=9)

    wait_until(
        lambda: len(sink.messages) >= len(subjects),
        DELIVERY_DEADLINE,
        f"{len(subjects)} messages at the sink (have {len(sink.messages)})",
    )
    seen = subjects_seen(sink)
    assert sorted(seen) == sorted(subjects) and set(seen.values()) == {1}, seen
    assert sink.max_concurrent <= limit, f"{sink.max_concurrent} connections open at once"
    # /metrics counts what every process did (prometheus_client's multiprocess mode).
    assert summed(server, "vmta_messages_accepted_total", source="smtp") == len(subjects)
    wait_until(
        lambda: summed(server, "vmta_messages_delivered_total") == len(subjects),
        DELIVERY_DEADLINE,
        "every delivery counted in /metrics",
    )
    assert summed(server, "vmta_messages_delivered_total") == len(subjects)
    workers = worker_pids(server)
    assert server.stop() == 0
    # Stopping `vmta serve` stopped its workers before it exited.
    assert not [pid for pid in workers if os.path.exists(f"/proc/{pid}")]


def test_a_killed_worker_is_replaced_and_its_work_delivered(
    serve: ServeFactory, sink: RecordingSink
) -> None:
    serve.configure(VMTA_WORKERS="2", VMTA_CONNECTION_IDLE_TIMEOUT="1")
    server = serve.start()
    wait_until(lambda: len(worker_pids(server)) == 1, 60, "one worker process")
    (worker,) = worker_pids(server)
    per_hour = 7200  # one message every half second, over both processes
    relay_to(server, sink.port, connections=1, per_hour=per_hour)
    subjects = [f"m{i}" for i in range(12)]
    inject(server.smtp_port, subjects, sessions=4)

    wait_until(lambda: len(sink.messages) >= 2, DELIVERY_DEADLINE, "delivery under way")
    os.kill(worker, signal.SIGKILL)  # whatever it held: a slot, claims, a message on the wire
    killed_at = time.time()
    wait_until(lambda: bool(worker_pids(server) - {worker}), 60, "the killed worker started again")

    wait_until(
        lambda: set(subjects_seen(sink)) >= set(subjects),
        DELIVERY_DEADLINE,
        f"every message at the sink (have {len(sink.messages)} of {len(subjects)})",
    )
    seen = subjects_seen(sink)
    assert sorted(seen) == sorted(subjects)
    assert sum(seen.values()) - len(seen) <= 1, seen  # at most the one on the wire
    assert any(t.at > killed_at for t in sink.messages), "nothing delivered after the kill"
    assert sink.max_concurrent <= 1, f"{sink.max_concurrent} connections open at once"
    starts = sorted(t.at for t in sink.messages)
    # Pacing over both processes: 12 messages at one every half second take at least 5 s
    # (the first goes at once; half a second of slack for the clocks of two processes).
    assert starts[-1] - starts[0] >= 5.0, starts
    assert server.stop() == 0


def test_workers_stop_when_vmta_serve_is_killed(serve: ServeFactory) -> None:
    serve.configure(VMTA_WORKERS="3")
    server = serve.start()
    wait_until(lambda: len(worker_pids(server)) == 2, 60, "two worker processes")
    workers = worker_pids(server)
    server.kill9()  # no handler of the parent runs: nothing tells the workers

    def gone() -> bool:
        return not [pid for pid in workers if os.path.exists(f"/proc/{pid}")]

    # They notice the parent is gone and stop by themselves (an orphan is reaped by init).
    wait_until(gone, 60, "the workers of a killed vmta serve to stop")
    assert "is gone" in server.log()


def socket_owners(pids: set[int], port: int) -> dict[int, int]:
    """For each TCP connection accepted on ``port`` (by its client's port): the pid of the
    process holding it, from /proc/net/tcp and each process's descriptors."""
    by_inode: dict[str, int] = {}
    with open("/proc/net/tcp", encoding="ascii") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if int(local.split(":")[1], 16) == port and remote.split(":")[1] != "0000":
                by_inode[inode] = int(remote.split(":")[1], 16)
    owners: dict[int, int] = {}
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue  # closed meanwhile
            inode = target.removeprefix("socket:[").removesuffix("]")
            if target.startswith("socket:[") and inode in by_inode:
                owners[by_inode[inode]] = pid
    return owners


@pytest.mark.one_database  # which process accepts: no database takes part
def test_a_burst_of_clients_is_spread_over_the_processes(serve: ServeFactory) -> None:
    serve.configure(VMTA_WORKERS="2")
    server = serve.start()
    assert server.proc is not None
    wait_until(lambda: len(worker_pids(server)) == 1, 60, "one worker process")
    wait_until(lambda: len(accepting_processes(server)) == 1, 60, "the worker accepting")
    processes = {server.proc.pid, *worker_pids(server)}
    clients = []
    try:
        # Every connection is made before any greeting is read: all of them wait in the
        # kernel's queue together, as when a sender opens its sessions at once.
        for _ in range(40):
            client = socket.create_connection(("127.0.0.1", server.smtp_port), timeout=30)
            clients.append(client)
        for client in clients:
            assert client.recv(512).startswith(b"220"), "no greeting"
        owners = socket_owners(processes, server.smtp_port)
        assert sorted(owners) == sorted(c.getsockname()[1] for c in clients)
        per_process = Counter(owners.values())
        assert set(per_process) == processes, per_process
        # Both processes take clients. How evenly depends on how the kernel schedules two
        # processes on a busy machine, so the pace that spreads them (one client per turn
        # of a loop) is asserted deterministically in tests/delivery/test_accept_pace.py.
        assert min(per_process.values()) >= 1, per_process
    finally:
        for client in clients:
            client.close()
    assert server.stop() == 0
