"""An AUTH answer that is neither 235 nor a refusal (Postfix's smtp-sink answers AUTH
with "250 2.0.0 Ok"): the session is deferred with a text that says what RFC 4954 §4
expects, the odd 250 is not passed on as the attempt's reply, and the failure names the
server it talked to (remote IP and host) for the attempt record."""

from __future__ import annotations

from typing import Any

import pytest

from tests.delivery.conftest import RunningPlane, eventually, message
from tests.delivery.test_smtp_client import PASSWORD, USER, connect
from tests.peers.scripted import smtp_script
from vmta.domain.attempts.transport_port import ConnectFailed
from vmta.domain.paths.egress_path import EgressPath
from vmta.domain.paths.egress_route import direct_route
from vmta.smtp.client import SessionDeferred
from vmta.smtp.transport import SmtpTransport, TransportSettings

ODD_AUTH = {"EHLO": "250-odd.test\r\n250 AUTH PLAIN LOGIN", "AUTH": "250 2.0.0 Ok"}


async def test_a_250_to_auth_defers_saying_235_was_expected(raw_server: Any) -> None:
    server = await raw_server(smtp_script("220 odd.test", ODD_AUTH, default="221 Bye"))
    with pytest.raises(SessionDeferred) as caught:
        await connect(server, username=USER, password=PASSWORD)
    assert caught.value.stage == "auth"
    assert caught.value.reply is None  # a 250 must not stand for a deferred attempt
    assert "answered AUTH PLAIN with 250 2.0.0 Ok" in caught.value.reason
    assert "235 (authenticated, RFC 4954 §4) was expected" in caught.value.reason
    assert PASSWORD not in caught.value.reason
    # What the server saw: AUTH, then a polite QUIT; no MAIL after an unproven AUTH.
    received = bytes(server.received[0])
    assert received.startswith(b"EHLO ") and b"AUTH PLAIN " in received
    assert b"MAIL" not in received and received.endswith(b"QUIT\r\n")


async def test_the_transport_failure_names_the_peer_it_talked_to(raw_server: Any) -> None:
    server = await raw_server(smtp_script("220 odd.test", ODD_AUTH, default="221 Bye"))
    path = EgressPath(
        throttle_key=("relay_server", "1"),
        destination_host="127.0.0.1",
        destination_port=server.port,
        route=direct_route("127.0.0.1"),
        ehlo_name="mta1.vmta.test",
        username=USER,
        password=PASSWORD,
    )
    transport = SmtpTransport(TransportSettings(connect_timeout=10.0, command_timeout=10.0))
    with pytest.raises(ConnectFailed) as caught:
        await transport.open(path)
    failure = caught.value
    assert failure.remote_ip == "127.0.0.1" and failure.remote_host == "127.0.0.1"
    assert failure.reply is None and not failure.permanent and not failure.egress
    assert "235 (authenticated, RFC 4954 §4) was expected" in failure.reason


async def test_a_connection_never_made_names_no_peer(raw_server: Any) -> None:
    server = await raw_server(smtp_script("220 odd.test", ODD_AUTH))
    port = server.port
    await server.close()
    path = EgressPath(
        throttle_key=("relay_server", "1"),
        destination_host="127.0.0.1",
        destination_port=port,
        route=direct_route("127.0.0.1"),
        ehlo_name="mta1.vmta.test",
    )
    transport = SmtpTransport(TransportSettings(connect_timeout=10.0, command_timeout=10.0))
    with pytest.raises(ConnectFailed) as caught:
        await transport.open(path)
    assert caught.value.remote_ip is None and caught.value.egress


# -- through the engine: what the attempt record says ----------------------------------


async def _first_attempt(plane: RunningPlane, raw_server: Any) -> dict[str, Any]:
    server = await raw_server(smtp_script("220 odd.test", ODD_AUTH, default="221 Bye"))
    plane.add_relay("relay-1", server.port, username=USER, password=PASSWORD)
    queue_id = await plane.asend(message("relay-1"))
    view = await eventually(lambda: (m := plane.message(queue_id)) and m.attempts and m)
    attempt: dict[str, Any] = view.attempts[0]
    return attempt


async def test_the_deferred_attempt_says_235_was_expected(
    plane: RunningPlane, raw_server: Any
) -> None:
    attempt = await _first_attempt(plane, raw_server)
    assert attempt["outcome"] == "deferred"
    assert attempt["reply"].startswith("451 ")  # not the 250 the server gave to AUTH
    assert "answered AUTH PLAIN with 250 2.0.0 Ok" in attempt["reply"]
    assert "235 (authenticated, RFC 4954 §4) was expected" in attempt["reply"]
    assert PASSWORD not in attempt["reply"]


async def test_the_deferred_attempt_names_the_peer_it_talked_to(
    plane: RunningPlane, raw_server: Any
) -> None:
    attempt = await _first_attempt(plane, raw_server)
    assert attempt["remote_ip"] == "127.0.0.1"
    assert attempt["remote_host"] == "127.0.0.1"


async def test_a_refused_connection_is_said_once(raw_server: Any) -> None:
    """Two addresses that fail alike, and a route the reason already names: one clause."""
    server = await raw_server(smtp_script("220 odd.test", ODD_AUTH))
    port = server.port
    await server.close()
    path = EgressPath(
        throttle_key=("relay_server", "1"),
        destination_host="127.0.0.1",
        destination_port=port,
        route=direct_route("127.0.0.1"),
        ehlo_name="mta1.vmta.test",
        candidates=(("a.test", "127.0.0.1"), ("b.test", "127.0.0.1")),
    )
    transport = SmtpTransport(TransportSettings(connect_timeout=10.0, command_timeout=10.0))
    with pytest.raises(ConnectFailed) as caught:
        await transport.open(path)
    assert caught.value.reason == (
        f"connect stage failed: connection to 127.0.0.1:{port} from 127.0.0.1 failed:"
        " connection refused"
    )
