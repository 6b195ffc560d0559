"""Node names per process, and which earlier nodes are gone, on SQLite and PostgreSQL.

Processes are real: a pid that is alive belongs to a running child process, a pid that
is gone to a child that has exited and been reaped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import update

from tests.store.test_spool import T0, message
from vmta.runtime.node_identity import (
    DATA_DIR_ID_FILE,
    LEGACY_NODE_ID_FILE,
    ThisProcess,
    register_node,
)
from vmta.store.nodes import NodeRegistry
from vmta.store.spool import SqlSpool
from vmta.store.store import Store
from vmta.store.tables import nodes

TTL = 300.0


@pytest.fixture
def live_pid() -> Iterator[int]:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        yield child.pid
    finally:
        child.kill()
        child.wait()


@pytest.fixture
def gone_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def as_process(pid: int) -> ThisProcess:
    return replace(ThisProcess.now(), pid=pid)


def data_dir(tmp_path: Path, name: str = "data") -> Path:
    path = tmp_path / name
    path.mkdir()
    return path


def test_every_process_gets_a_name_of_its_own_even_from_a_copied_data_dir(
    store: Store, tmp_path: Path, live_pid: int
) -> None:
    original = data_dir(tmp_path)
    first = register_node(store, original, ttl=TTL, process=as_process(live_pid))
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)  # the first is still running

    second = register_node(store, copy, ttl=TTL)

    assert second.data_dir_id == first.data_dir_id  # the copy carries the id along
    assert second.node_id != first.node_id
    assert first.node_id not in second.predecessors  # alive: its leases are left alone
    assert {n.id for n in NodeRegistry(store).all()} == {first.node_id, second.node_id}


def test_a_restart_releases_the_leases_of_the_previous_run_at_once(
    store: Store, tmp_path: Path, gone_pid: int
) -> None:
    directory = data_dir(tmp_path)
    before = register_node(store, directory, ttl=TTL, process=as_process(gone_pid))
    old = SqlSpool(store, before.node_id)
    old.accept([message("Q1", ["a@x.test", "b@x.test"])], lease_until=T0 + 300)
    other = SqlSpool(store, "another-node")
    assert other.claim_due(T0 + 1, 10, T0 + 301) == []  # leased by the previous run

    after = register_node(store, directory, ttl=TTL)
    restarted = SqlSpool(store, after.node_id, predecessors=after.predecessors)

    assert before.node_id in after.predecessors
    assert restarted.release_own_leases(T0 + 2) == 2
    assert len(restarted.claim_due(T0 + 2, 10, T0 + 302)) == 2
    assert [n.id for n in NodeRegistry(store).all()] == [after.node_id]


def test_a_run_with_this_very_pid_is_over(store: Store, tmp_path: Path) -> None:
    """A container restarted: same host name, same pid (often 1), new process."""
    directory = data_dir(tmp_path)
    before = register_node(store, directory, ttl=TTL)
    after = register_node(store, directory, ttl=TTL)
    assert before.node_id in after.predecessors


def test_a_run_from_an_earlier_boot_is_over(store: Store, tmp_path: Path, live_pid: int) -> None:
    directory = data_dir(tmp_path)
    earlier_boot = replace(as_process(live_pid), boot_id="an-earlier-boot")
    before = register_node(store, directory, ttl=TTL, process=earlier_boot)
    after = register_node(store, directory, ttl=TTL)
    assert before.node_id in after.predecessors


def test_a_copy_on_another_host_is_gone_only_when_its_heartbeat_is_old(
    store: Store, tmp_path: Path, gone_pid: int
) -> None:
    directory = data_dir(tmp_path)
    elsewhere = replace(as_process(gone_pid), host="another-host.test")
    remote = register_node(store, directory, ttl=TTL, process=elsewhere)
    copy = tmp_path / "copy"
    shutil.copytree(directory, copy)

    # Its pid means nothing here: it is on another machine, and its heartbeat is fresh.
    assert remote.node_id not in register_node(store, copy, ttl=TTL).predecessors

    with store.write() as conn:  # as if it had stopped beating ten minutes ago
        conn.execute(
            update(nodes)
            .where(nodes.c.id == remote.node_id)
            .values(heartbeat_at=nodes.c.heartbeat_at - 600)
        )
    assert remote.node_id in register_node(store, copy, ttl=TTL).predecessors


def test_any_node_with_an_old_heartbeat_is_gone(
    store: Store, tmp_path: Path, live_pid: int
) -> None:
    stale = register_node(store, data_dir(tmp_path, "a"), ttl=TTL, process=as_process(live_pid))
    with store.write() as conn:
        conn.execute(update(nodes).values(heartbeat_at=nodes.c.heartbeat_at - 2 * TTL))
    fresh = register_node(store, data_dir(tmp_path, "b"), ttl=TTL)
    assert stale.node_id in fresh.predecessors


def test_renewing_leases_is_the_heartbeat(store: Store, tmp_path: Path, live_pid: int) -> None:
    me = register_node(store, data_dir(tmp_path, "a"), ttl=TTL)
    with store.write() as conn:  # ten minutes without a heartbeat...
        conn.execute(update(nodes).values(heartbeat_at=nodes.c.heartbeat_at - 2 * TTL))
    SqlSpool(store, me.node_id).renew_leases(T0 + 300)  # ...then one
    other = register_node(store, data_dir(tmp_path, "b"), ttl=TTL, process=as_process(live_pid))
    assert me.node_id not in other.predecessors


def test_a_data_dir_from_before_keeps_its_node_name_as_its_id(store: Store, tmp_path: Path) -> None:
    directory = data_dir(tmp_path)
    (directory / LEGACY_NODE_ID_FILE).write_text("oldhost-1a2b3c4d\n", encoding="ascii")
    old = SqlSpool(store, "oldhost-1a2b3c4d")  # the lease owner name of the old version
    old.accept([message("Q1", ["a@x.test"])], lease_until=T0 + 300)

    me = register_node(store, directory, ttl=TTL)
    spool = SqlSpool(store, me.node_id, predecessors=me.predecessors)

    assert me.data_dir_id == "oldhost-1a2b3c4d"
    assert (directory / DATA_DIR_ID_FILE).read_text(encoding="ascii").strip() == me.data_dir_id
    assert spool.release_own_leases(T0 + 1) == 1


def test_the_node_name_fits_the_lease_owner_column(store: Store, tmp_path: Path) -> None:
    long_host = replace(ThisProcess.now(), host="h" * 200, pid=os.getpid())
    me = register_node(store, data_dir(tmp_path), ttl=TTL, process=long_host)
    assert len(me.node_id) <= 64
    spool = SqlSpool(store, me.node_id)
    assert len(spool.accept([message("Q1", ["a@x.test"])], lease_until=T0 + 300)) == 1
