"""This process's name in the cluster, and which earlier processes are gone.

Each `vmta serve` process takes a fresh name (host, pid, random part), so that two
processes never share one, not even when one data directory was copied to start another
node. What stays with the data directory is its id (the file ``data-dir-id``); at start a
process looks up the earlier runs of that id and releases the leases of those that have
stopped, so a restart takes its unfinished work back at once:

- on the same host (and, on Linux, the same boot), a run whose pid no longer exists, or
  whose pid is this process's own (a container restarted with the same pid), is over;
- a run on another host (a copied data directory), or whose pid is alive, is left alone:
  only its heartbeat, once older than the time-to-live, says it is dead.

So nodes of one cluster must have distinct host names.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

from vmta.store.nodes import NodeRecord, NodeRegistry
from vmta.store.store import Store

log = logging.getLogger(__name__)

DATA_DIR_ID_FILE = "data-dir-id"
LEGACY_NODE_ID_FILE = "node-id"  # before issue 9: the lease owner, one per data directory
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


@dataclass(frozen=True)
class NodeIdentity:
    node_id: str  # this process's lease owner name
    data_dir_id: str
    predecessors: tuple[str, ...]  # gone nodes whose leases are to be released


def data_dir_id(data_dir: Path) -> str:
    """The data directory's id, made once. A data directory from before node names per
    process keeps its old node name as its id: the leases it left carry that name."""
    path = data_dir / DATA_DIR_ID_FILE
    for candidate in (path, data_dir / LEGACY_NODE_ID_FILE):
        if candidate.exists():
            value = candidate.read_text(encoding="ascii").strip()
            if value:
                if candidate != path:
                    path.write_text(value + "\n", encoding="ascii")
                return value
    value = f"{socket.gethostname()[:40]}-{secrets.token_hex(4)}"
    path.write_text(value + "\n", encoding="ascii")
    return value


def boot_id() -> str | None:
    try:
        return BOOT_ID.read_text(encoding="ascii").strip() or None
    except OSError:
        return None


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


@dataclass(frozen=True)
class ThisProcess:
    host: str
    boot_id: str | None
    pid: int

    @classmethod
    def now(cls) -> ThisProcess:
        return cls(socket.gethostname(), boot_id(), os.getpid())

    def node_id(self) -> str:
        return f"{self.host[:40]}-{self.pid}-{secrets.token_hex(4)}"

    def knows_stopped(self, record: NodeRecord) -> bool:
        """Whether ``record`` (a run of the same data directory) is certainly over."""
        if record.host != self.host:
            return False  # another machine: only its heartbeat can tell
        if record.boot_id and self.boot_id and record.boot_id != self.boot_id:
            return True  # the machine restarted since
        return record.pid == self.pid or not pid_exists(record.pid)


def register_node(
    store: Store, data_dir: Path, *, ttl: float, process: ThisProcess | None = None
) -> NodeIdentity:
    """Register this process as a node; ``ttl``: seconds without a heartbeat after which
    any node counts as dead (heartbeats come with lease renewals, every third of it)."""
    me = process or ThisProcess.now()
    dir_id = data_dir_id(data_dir)
    node_id = me.node_id()
    gone = NodeRegistry(store).register(
        node_id,
        data_dir_id=dir_id,
        host=me.host,
        boot_id=me.boot_id,
        pid=me.pid,
        ttl=ttl,
        stopped=me.knows_stopped,
    )
    if gone:
        log.info("nodes gone, their leases are released: %s", ", ".join(sorted(gone)))
    # The data directory's id itself: leases left by a vmta from before node names per
    # process (they used it as the owner name).
    return NodeIdentity(node_id, dir_id, (*gone, dir_id))
