"""The addresses and ports vmta itself listens on, so that delivery never connects to
them: mail sent there would be accepted again, sent again, and so on (a relay server
whose destination is vmta's own injection port made one message into 1,335 in 30
seconds). Postfix calls this "loops back to myself" (domain/paths/mail_loops.py).

A listener bound to a wildcard address (0.0.0.0, ::) listens on every address of the
host, so a destination with its port is vmta when its address is one of this host's:
one that a socket can bind (the kernel accepts ``bind`` only for a local address), asked
once per address and remembered.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field


def _normal(address: str) -> str:
    """One spelling per address: ``::ffff:127.0.0.1`` is 127.0.0.1."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address.lower()
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped if mapped is not None else ip)


def _is_wildcard(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_unspecified
    except ValueError:
        return False


@dataclass
class OwnListeners:
    """Where this process (and the other processes of its node) accept connections."""

    # (normalised address, port) of every listener; a wildcard address stands for all.
    _listening: set[tuple[str, int]] = field(default_factory=set)
    _local: dict[str, bool] = field(default_factory=dict)

    def add(self, host: str, port: int) -> None:
        """A listener on ``host``:``port`` (as bound: port 0 already resolved)."""
        self._listening.add((_normal(host), port))

    def describe(self) -> list[str]:
        return sorted(f"{host}:{port}" for host, port in self._listening)

    def loops_back(self, address: str, port: int) -> bool:
        """Would a connection to ``address``:``port`` reach vmta itself?"""
        if not self._listening:
            return False
        ip = _normal(address)
        if (ip, port) in self._listening:
            return True
        wildcard = any(_is_wildcard(host) and p == port for host, p in self._listening)
        # A connection to 0.0.0.0 goes to the local host (Linux), so it counts as local.
        return wildcard and (_is_wildcard(ip) or self._is_local(ip))

    def _is_local(self, ip: str) -> bool:
        known = self._local.get(ip)
        if known is None:
            known = self._local[ip] = _bindable(ip)
        return known


def _bindable(ip: str) -> bool:
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(ip).version == 6 else socket.AF_INET
    except ValueError:
        return False
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((ip, 0))
    except OSError:
        return False
    return True
