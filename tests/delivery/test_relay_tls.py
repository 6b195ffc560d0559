"""Relay TLS: credentials go to a remote relay only over TLS whose certificate verified
(against the system's CAs or VMTA_RELAY_CA_FILE, with SNI), and the per-relay policy
(opportunistic, required, verified) holds. Real sinks with certificates from a throwaway
CA (trustme); SQLite and PostgreSQL.

Every peer here is on loopback, and loopback peers are exempt from the credential rule
(nothing leaves the host). These tests set the transport's ``loopback_is_remote``
(VMTA_LOOPBACK_COUNTS_AS_REMOTE, a setting for tests only) so that the sink is judged as
a remote relay would be.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.delivery.conftest import RunningPlane, eventually
from tests.peers.sink import RecordingSink, TlsFiles
from vmta.domain.paths.relay_tls import parse_relay_tls
from vmta.smtp.transport import TransportSettings

MESSAGE = "Subject: tls\r\n\r\nbody\r\n"
CREDENTIALS = ("relay-user", "relay-pass")


@dataclass(frozen=True)
class SniTlsFiles(TlsFiles):
    """The sink's certificate, and a record of the SNI names clients sent."""

    names: list[str | None] = field(default_factory=list, compare=False)

    def server_context(self) -> ssl.SSLContext:
        context = super().server_context()

        def note(sock: Any, name: str | None, ctx: Any) -> None:
            self.names.append(name)

        context.sni_callback = note
        return context


@pytest.fixture(scope="module")
def test_ca() -> trustme.CA:
    return trustme.CA()


def sink_files(ca: trustme.CA, directory: Path) -> SniTlsFiles:
    issued = ca.issue_cert("localhost", "127.0.0.1")
    pem = directory / "sink.pem"
    issued.private_key_and_cert_chain_pem.write_to_path(str(pem))
    return SniTlsFiles(cert=pem, key=pem)


@pytest.fixture
def ca_file(test_ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    test_ca.cert_pem.write_to_path(str(path))
    return path


def transport(ca_file: Path | None, *policies: str) -> TransportSettings:
    return TransportSettings(
        connect_timeout=5,
        relay_tls=parse_relay_tls(policies),
        ca_file=str(ca_file) if ca_file else None,
        loopback_is_remote=True,
    )


async def deferred_reply(plane: RunningPlane, queue_id: str) -> str:
    view = await eventually(
        lambda: (m := plane.message(queue_id)) and m.attempts and m, what="an attempt"
    )
    attempt = view.attempts[0]
    assert attempt["outcome"] == "deferred", attempt
    assert view.recipients[0]["state"] != "delivered"
    return str(attempt["reply"])


async def test_unverified_certificate_gets_no_credentials(
    plane_factory: Any, sink_factory: Any, tmp_path: Path, ca_file: Path
) -> None:
    other_ca = trustme.CA()  # the sink's certificate chains to a CA vmta does not trust
    sink: RecordingSink = sink_factory(tls=sink_files(other_ca, tmp_path), credentials=CREDENTIALS)
    plane: RunningPlane = await plane_factory(transport=transport(ca_file))
    plane.add_relay("relay-1", sink.port, username=CREDENTIALS[0], password=CREDENTIALS[1])
    plane.set_default("relay-1")
    queue_id = await plane.asend(MESSAGE)

    reply = await deferred_reply(plane, queue_id)
    assert "did not verify" in reply and "credentials were not sent" in reply, reply
    assert sink.connections, "vmta never reached the sink"
    assert all(c.auth_identity is None for c in sink.connections)
    assert all("AUTH" not in c.commands for c in sink.connections)
    assert sink.messages == []


async def test_certificate_from_the_configured_ca_gets_auth(
    plane_factory: Any, sink_factory: Any, tmp_path: Path, test_ca: trustme.CA, ca_file: Path
) -> None:
    files = sink_files(test_ca, tmp_path)
    sink: RecordingSink = sink_factory(tls=files, credentials=CREDENTIALS)
    plane: RunningPlane = await plane_factory(transport=transport(ca_file))
    plane.add_relay(
        "relay-1",
        sink.port,
        destination_hostname="localhost",
        username=CREDENTIALS[0],
        password=CREDENTIALS[1],
    )
    plane.set_default("relay-1")
    await plane.asend(MESSAGE)

    await eventually(lambda: sink.messages, what="delivery")
    connection = sink.connections[-1]
    assert connection.tls is True and connection.auth_identity == CREDENTIALS[0]
    assert "localhost" in files.names  # SNI: the relay's destination host name


async def test_required_policy_waits_without_starttls(
    plane_factory: Any, sink_factory: Any
) -> None:
    sink: RecordingSink = sink_factory()  # no TLS at all
    plane: RunningPlane = await plane_factory(transport=transport(None, "relay-1=required"))
    plane.add_relay("relay-1", sink.port)
    plane.set_default("relay-1")
    queue_id = await plane.asend(MESSAGE)

    reply = await deferred_reply(plane, queue_id)
    assert "does not offer STARTTLS" in reply and "required" in reply, reply
    assert sink.transactions == []


async def test_verified_policy_checks_even_without_credentials(
    plane_factory: Any, sink_factory: Any, tmp_path: Path, ca_file: Path
) -> None:
    sink: RecordingSink = sink_factory(tls=sink_files(trustme.CA(), tmp_path))
    plane: RunningPlane = await plane_factory(transport=transport(ca_file, "verified"))
    plane.add_relay("relay-1", sink.port)
    plane.set_default("relay-1")
    queue_id = await plane.asend(MESSAGE)

    reply = await deferred_reply(plane, queue_id)
    assert "did not verify" in reply, reply
    assert sink.transactions == []


async def test_opportunistic_without_credentials_accepts_any_certificate(
    plane_factory: Any, sink_factory: Any, tmp_path: Path, ca_file: Path
) -> None:
    sink: RecordingSink = sink_factory(tls=sink_files(trustme.CA(), tmp_path))
    plane: RunningPlane = await plane_factory(transport=transport(ca_file))
    plane.add_relay("relay-1", sink.port)
    plane.set_default("relay-1")
    await plane.asend(MESSAGE)

    await eventually(lambda: sink.messages, what="delivery")
    assert sink.connections[-1].tls is True  # encrypted, unverified (RFC 7435)
