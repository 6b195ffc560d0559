"""Several live `vmta serve` nodes on one PostgreSQL schema and one Redis namespace, mail
injected into every node at once, one relay server VirtualMTA to one recording sink.

What is asserted is what the sink saw: at no moment more connections open than the relay
server's ``max_concurrent_connections``, summed over every node; no more messages in a
window than ``max_messages_per_hour`` allows; every message delivered once. Killing a
node (SIGKILL) gives its connection slot back (after the Redis lease) and its claimed work
to the others (after the claim lease).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e.serve_process import (
    API_TOKEN,
    ServeProcess,
    environment,
    relay_to,
    send_subjects,
    subjects_seen,
    wait_until,
)
from tests.free_ports import free_port
from tests.peers.redis_db import RedisDb
from tests.peers.sink import RecordingSink

LEASE = "3"  # seconds: Redis connection leases and spool claims of a dead node end soon
DELIVERY_DEADLINE = 180.0  # bounds a hang on a loaded machine; measures nothing


@dataclass
class Cluster:
    tmp_path: Path
    env: dict[str, str]
    nodes: list[ServeProcess] = field(default_factory=list)

    def start(self, name: str, *, copy_of: ServeProcess | None = None) -> ServeProcess:
        """A node with its own data directory (a copy of another node's, if asked: a
        copied data directory must still give a node of its own) and SMTP port."""
        data_dir = self.tmp_path / name
        if copy_of is not None:
            shutil.copytree(copy_of.data_dir, data_dir)
        node = ServeProcess(
            data_dir=data_dir,
            env=self.env,
            smtp_port=free_port(),
            log_path=self.tmp_path / f"{name}.log",
        )
        self.nodes.append(node)
        return node.start()

    def close(self) -> None:
        for node in self.nodes:
            node.close()


@pytest.fixture
def cluster(tmp_path: Path, pg_url: str, redis_db: RedisDb) -> Iterator[Cluster]:
    env = environment(
        VMTA_API_TOKEN=API_TOKEN,
        VMTA_HOSTNAME="vmta.test",
        VMTA_LOG_LEVEL="INFO",
        VMTA_DATABASE_URL=pg_url,
        VMTA_REDIS_URL=redis_db.url,
        VMTA_REDIS_NAMESPACE=redis_db.namespace,
        VMTA_REDIS_LEASE=LEASE,
        VMTA_CLAIM_LEASE=LEASE,
        VMTA_CONNECTION_IDLE_TIMEOUT="1",
    )
    made = Cluster(tmp_path, env)
    try:
        yield made
    finally:
        made.close()  # before the PostgreSQL schema is dropped


Work = list[tuple[ServeProcess, list[str]]]  # what each node is given


def inject(work: Work, sessions_per_node: int = 2) -> None:
    """Every node's share at once: ``sessions_per_node`` SMTP sessions into each."""
    with ThreadPoolExecutor(max_workers=len(work) * sessions_per_node) as pool:
        futures = [
            pool.submit(send_subjects, node.smtp_port, subjects[i::sessions_per_node])
            for node, subjects in work
            for i in range(sessions_per_node)
        ]
        for future in futures:
            future.result()


def most_in_any_window(times: Sequence[float], window: float) -> int:
    ordered = sorted(times)
    most = 0
    start = 0
    for end, at in enumerate(ordered):
        while at - ordered[start] >= window:
            start += 1
        most = max(most, end - start + 1)
    return most


@pytest.mark.slow(17)
@pytest.mark.parametrize("count", [2, 3])
def test_connection_limit_holds_summed_over_every_node(
    cluster: Cluster, sink: RecordingSink, count: int
) -> None:
    limit = 2
    nodes = [cluster.start(f"node{i}") for i in range(count)]
    relay_to(nodes[0], sink.port, connections=limit)
    work = [(node, [f"n{i}-m{j}" for j in range(30)]) for i, node in enumerate(nodes)]

    inject(work)

    total = sum(len(s) for _, s in work)
    wait_until(
        lambda: len(sink.messages) >= total,
        DELIVERY_DEADLINE,
        f"{total} messages at the sink (have {len(sink.messages)})",
    )
    assert sorted(subjects_seen(sink)) == sorted(s for _, v in work for s in v)
    assert set(subjects_seen(sink).values()) == {1}
    # Needs the engine to take its connection slots from the throttle backend (Redis):
    assert sink.max_concurrent <= limit, f"{sink.max_concurrent} connections open at once"


@pytest.mark.slow(31)
def test_a_killed_node_gives_back_its_connection_slot_and_its_work(
    cluster: Cluster, sink: RecordingSink
) -> None:
    per_hour = 3600  # one message a second, for the whole cluster
    first = cluster.start("a")
    relay_to(first, sink.port, connections=1, per_hour=per_hour)
    second = cluster.start("b")
    third = cluster.start("c", copy_of=first)  # a copied data directory: a node of its own

    first_work = [f"a-m{j}" for j in range(8)]
    inject([(first, first_work)], sessions_per_node=1)
    # The first node delivers, paced, over the cluster's one connection slot.
    wait_until(lambda: len(sink.messages) >= 2, DELIVERY_DEADLINE, "the first node delivering")
    first.kill9()  # holding the slot (its lease in Redis) and claims on the rest of its work
    killed_at = time.time()
    assert len(sink.messages) < len(first_work), "the first node finished before the kill"

    rest = [(second, [f"b-m{j}" for j in range(3)]), (third, [f"c-m{j}" for j in range(3)])]
    inject(rest)

    expected = first_work + [s for _, v in rest for s in v]
    wait_until(
        lambda: set(subjects_seen(sink)) >= set(expected),
        DELIVERY_DEADLINE,
        f"every message at the sink (have {len(sink.messages)} of {len(expected)})",
    )
    seen = subjects_seen(sink)
    assert sorted(seen) == sorted(expected)
    # At most the one message on the wire when the node died arrives twice.
    assert sum(seen.values()) - len(seen) <= 1, seen
    after = [t.at for t in sink.messages if t.at > killed_at]
    assert after, "nothing delivered after the kill"
    # Needs the engine to use the throttle backend (Redis) for connections and pacing:
    assert sink.max_concurrent <= 1, f"{sink.max_concurrent} connections open at once"
    window = 5.0  # at 3600/hour, at most 5 messages start in 5 s; one more for jitter
    assert most_in_any_window([t.at for t in sink.messages], window) <= 6


def test_a_postgresql_node_says_which_throttles_it_uses(
    tmp_path: Path, pg_url: str, redis_db: RedisDb
) -> None:
    base = {"VMTA_API_TOKEN": API_TOKEN, "VMTA_HOSTNAME": "vmta.test"}
    alone = Cluster(tmp_path / "alone", environment(**base, VMTA_DATABASE_URL=pg_url))
    shared = Cluster(
        tmp_path / "shared",
        environment(
            **base,
            VMTA_DATABASE_URL=pg_url,
            VMTA_REDIS_URL=redis_db.url,
            VMTA_REDIS_NAMESPACE=redis_db.namespace,  # its keys are deleted afterwards
        ),
    )
    try:
        for made in (alone, shared):
            made.tmp_path.mkdir()
        per_node = alone.start("node").log()
        cluster_wide = shared.start("node").log()
    finally:
        alone.close()
        shared.close()
    assert "throttles are per node" in per_node
    assert "throttles are per node" not in cluster_wide
    assert "throttles are shared through Redis" in cluster_wide
    assert redis_db.url not in cluster_wide
