"""Ports for peers a test starts later (a sink, a proxy, ``vmta serve``): the one place
that picks them.

A port the kernel hands out for ``bind(port 0)`` comes from its ephemeral range, the same
range every outbound connection on the machine takes its source port from. Probing such a
port and binding it a moment later loses, now and then, to a connection of another test
(vmta connecting to a sink, a client retrying a dead broker): "address already in use".
So the ports here come from below (or above) the ephemeral range, where no connection's
source port ever lands, and each pytest-xdist worker has a block of its own, so two workers
never probe the same port. A port is handed out only if it binds now, for TCP (and UDP when
asked) on the host, and a worker does not hand the same port out twice until it has gone
through its whole block.
"""

from __future__ import annotations

import itertools
import os
import socket
from collections.abc import Iterator
from pathlib import Path

BLOCK = 1500  # ports per worker
LOWEST = 10000  # below: well-known services and what distributions start on their own


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def _worker_block() -> range:
    """This worker's block: outside the ephemeral range, one per xdist worker (gw0, gw1,
    ...; a run without xdist is worker 0)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    index = int(worker) if worker.isdigit() else 0
    low, high = _ephemeral_range()
    usable = [span for span in (range(LOWEST, low), range(high + 1, 65536)) if len(span) >= BLOCK]
    blocks = [
        span[i : i + BLOCK] for span in usable for i in range(0, len(span) - BLOCK + 1, BLOCK)
    ]
    if not blocks:  # an ephemeral range that leaves no room: the kernel's choice after all
        return range(0, 0)
    return blocks[index % len(blocks)]


def _binds(host: str, port: int, kind: socket.SocketKind) -> bool:
    with socket.socket(socket.AF_INET, kind) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _kernel_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


_BLOCK = _worker_block()
_candidates: Iterator[int] = itertools.cycle(_BLOCK)


def free_port(host: str = "127.0.0.1", udp: bool = False) -> int:
    """A port of ``host`` that nothing uses now (TCP, and UDP too when ``udp``) and that no
    outbound connection will take meanwhile. Bind it soon: another test of this worker gets
    it again only after the worker's whole block."""
    for port in itertools.islice(_candidates, len(_BLOCK)):
        if _binds(host, port, socket.SOCK_STREAM) and (
            not udp or _binds(host, port, socket.SOCK_DGRAM)
        ):
            return port
    return _kernel_port(host)
