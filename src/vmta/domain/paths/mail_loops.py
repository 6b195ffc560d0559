"""Mail loops: the rules that keep one message from going round and round.

RFC 5321 §6.3 asks a relay to detect loops, and names the simplest sign: the number of
``Received`` fields, one per hop (§4.4). Postfix refuses at ``hopcount_limit`` (50) and
says a destination that is itself "loops back to myself"; KumoMTA refuses loopback MX
hosts unless told otherwise. vmta does the three things:

- a message with more than ``max_hops`` Received fields is refused at DATA;
- a destination that is one of vmta's own listening addresses and ports fails the
  attempt permanently (``delivery/routing/own_listeners.py`` knows those);
- MX answers and address literals that are loopback, unspecified or link-local are not
  used: a domain of the internet whose MX is 127.0.0.1 is a misconfiguration or an
  attack, never a real mailbox (tests that publish loopback MX hosts allow them).

The enhanced status code is RFC 3463's X.4.6, "routing loop detected".
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import Protocol

from vmta.domain.errors import PermanentError

DEFAULT_MAX_HOPS = 100
TOO_MANY_HOPS = "Too many hops (mail loop?)"
TOO_MANY_HOPS_REPLY = f"554 5.4.6 {TOO_MANY_HOPS}"
LOOP_CODE = 554
LOOP_STATUS = "5.4.6"  # RFC 3463 §3.5: routing loop detected

# A Received field starts a line of the header section; RFC 5322 §4.5.3 (obsolete
# syntax) allows white space before the colon.
_RECEIVED = re.compile(rb"^received[ \t]*:", re.IGNORECASE | re.MULTILINE)
_END_OF_HEADER = re.compile(rb"\r?\n\r?\n")


class TooManyHops(PermanentError):
    """The message has passed through more relays than a message should: a loop."""

    def __init__(self, count: int, limit: int) -> None:
        super().__init__(f"{TOO_MANY_HOPS}: {count} Received fields, more than {limit}")
        self.count = count
        self.limit = limit


def received_count(data: bytes) -> int:
    """The number of Received fields in the header section of ``data`` (the body is not
    read: it ends at the first empty line, RFC 5322 §2.1)."""
    end = _END_OF_HEADER.search(data)
    header = data if end is None else data[: end.start() + 1]
    return len(_RECEIVED.findall(header))


def check_hops(data: bytes, limit: int) -> None:
    """Raise ``TooManyHops`` when ``data`` has more than ``limit`` Received fields."""
    count = received_count(data)
    if count > limit:
        raise TooManyHops(count, limit)


@functools.lru_cache(maxsize=4096)
def is_local_only(address: str) -> bool:
    """Is ``address`` one that never names a host of the internet: loopback
    (127.0.0.0/8, ::1), unspecified (0.0.0.0, ::) or link-local (169.254.0.0/16,
    fe80::/10), also as an IPv4-mapped IPv6 address? An unparsable text is not."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        ip = mapped
    return bool(ip.is_loopback or ip.is_unspecified or ip.is_link_local)


def loops_back_text(destination: str, address: str, port: int) -> str:
    """The reply text of a destination that is vmta itself (Postfix's words)."""
    return f"{LOOP_STATUS} mail for {destination} loops back to myself ({address}:{port})"


def local_only_text(domain: str, addresses: list[str]) -> str:
    """The reply text of a domain whose every address is loopback, unspecified or
    link-local."""
    shown = ", ".join(addresses[:3])
    return (
        f"{LOOP_STATUS} mail for {domain} loops back to myself: its mail hosts resolve only to"
        f" loopback, unspecified or link-local addresses ({shown})"
    )


class LoopCheck(Protocol):
    """What a transport asks before it connects: is this address and port vmta itself
    (``vmta.delivery.routing.own_listeners.OwnListeners`` answers for a running node)?"""

    def loops_back(self, address: str, port: int) -> bool: ...
