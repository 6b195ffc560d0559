"""A network namespace joined to this one by a veth pair: a client there connects from a
non-loopback address (10.x.y.2) to a server bound on this side's end (10.x.y.1). Needs
root and iproute2; each namespace and link is named uniquely and removed afterwards."""

from __future__ import annotations

import random
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class Namespace:
    name: str
    host_ip: str  # this side's end of the link
    client_ip: str  # the namespace's end

    def python(self, code: str, timeout: float = 60.0) -> str:
        """Run ``code`` with this interpreter inside the namespace; its stdout."""
        done = subprocess.run(
            ["ip", "netns", "exec", self.name, sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
        return done.stdout


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@contextmanager
def namespace() -> Iterator[Namespace]:
    tag = f"{random.SystemRandom().randrange(16**6):06x}"
    octet = int(tag[:2], 16)
    name, host_end, ns_end = f"vmta-{tag}", f"vh{tag}", f"vn{tag}"
    host_ip, client_ip = f"10.231.{octet}.1", f"10.231.{octet}.2"
    _ip("netns", "add", name)
    try:
        _ip("link", "add", host_end, "type", "veth", "peer", "name", ns_end)
        _ip("link", "set", ns_end, "netns", name)
        _ip("addr", "add", f"{host_ip}/30", "dev", host_end)
        _ip("link", "set", host_end, "up")
        _ip("netns", "exec", name, "ip", "addr", "add", f"{client_ip}/30", "dev", ns_end)
        _ip("netns", "exec", name, "ip", "link", "set", ns_end, "up")
        _ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        yield Namespace(name, host_ip, client_ip)
    finally:
        subprocess.run(["ip", "link", "del", host_end], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
