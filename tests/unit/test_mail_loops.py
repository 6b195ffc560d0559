"""The rules against mail loops (domain/paths/mail_loops.py) and vmta's own listeners
(delivery/routing/own_listeners.py)."""

from __future__ import annotations

import pytest

from vmta.delivery.routing.own_listeners import OwnListeners
from vmta.domain.paths.mail_loops import TooManyHops, check_hops, is_local_only, received_count


def message(hops: int, body: str = "body\r\n") -> bytes:
    fields = "".join(f"Received: from h{i}.test by h{i + 1}.test; now\r\n" for i in range(hops))
    return f"{fields}Subject: s\r\n\r\n{body}".encode()


def test_received_fields_are_counted_in_the_header_only() -> None:
    assert received_count(message(0)) == 0
    assert received_count(message(3)) == 3
    # Any case, white space before the colon (RFC 5322 §4.5.3), folded continuations.
    folded = b"received: from a\r\n\tby b; now\r\nRECEIVED :x\r\nX-Received: no\r\n\r\n"
    assert received_count(folded) == 2
    # The body is not the header: a forwarded message's fields there do not count.
    assert received_count(message(1, body="Received: from x\r\nReceived: y\r\n")) == 1
    assert received_count(b"Received: x\nReceived: y\n\nReceived: z\n") == 2  # bare LF


def test_more_than_the_limit_is_a_loop() -> None:
    check_hops(message(100), 100)  # exactly the limit: accepted
    with pytest.raises(TooManyHops) as refused:
        check_hops(message(101), 100)
    assert (refused.value.count, refused.value.limit) == (101, 100)
    assert "Too many hops (mail loop?)" in str(refused.value)


@pytest.mark.parametrize(
    ("address", "local_only"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("0.0.0.0", True),
        ("::", True),
        ("169.254.1.2", True),
        ("fe80::1", True),
        ("fe80::1%eth0", True),
        ("::ffff:127.0.0.1", True),
        ("192.0.2.25", False),
        ("10.1.2.3", False),  # private, but a real host of some network
        ("2001:db8::25", False),
        ("not-an-address", False),
    ],
)
def test_local_only_addresses(address: str, local_only: bool) -> None:
    assert is_local_only(address) is local_only


def test_own_listeners_by_address_and_port() -> None:
    own = OwnListeners()
    assert not own.loops_back("127.0.0.1", 2525)  # nothing listens yet
    own.add("127.0.0.1", 2525)
    own.add("::1", 8080)
    assert own.loops_back("127.0.0.1", 2525)
    assert own.loops_back("::ffff:127.0.0.1", 2525)
    assert own.loops_back("::1", 8080)
    assert not own.loops_back("127.0.0.1", 25)  # another port
    assert not own.loops_back("127.0.0.2", 2525)  # nothing of vmta listens there
    assert not own.loops_back("::1", 2525)


def test_a_wildcard_listener_is_every_local_address() -> None:
    own = OwnListeners()
    own.add("0.0.0.0", 2525)
    assert own.loops_back("127.0.0.1", 2525)
    assert own.loops_back("127.0.0.53", 2525)  # all of 127/8 is this host's (Linux)
    assert own.loops_back("0.0.0.0", 2525)
    assert not own.loops_back("192.0.2.25", 2525)  # TEST-NET-1: never this host's
    assert not own.loops_back("127.0.0.1", 25)
