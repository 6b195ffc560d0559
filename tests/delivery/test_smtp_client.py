"""The outbound SMTP client against a real recording SMTP server (aiosmtpd) and, for
misbehaving peers, a raw scripted TCP server. Assertions are on what the peer saw."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.peers.scripted import CLOSE, SILENT, RawServer, smtp_script
from tests.peers.sink import DROP, RecordingSink, TlsFiles
from vmta.domain.message.wire_form import to_wire, wire_size
from vmta.domain.paths.egress_route import direct_route
from vmta.egress.connector import open_connection
from vmta.smtp.client import (
    CleartextAuthRefused,
    InvalidEnvelope,
    SessionDeferred,
    SessionOptions,
    SessionRejected,
    SmtpSession,
    cleartext_auth_allowed,
)

USER, PASSWORD = "relay-user", "s3cret-Pass!word"
BODY = b"Subject: test\r\n\r\nHello.\r\n"


def options(**overrides: Any) -> SessionOptions:
    values: dict[str, Any] = {
        "ehlo_name": "mta1.vmta.test",
        "command_timeout": 10.0,
        "data_timeout": 10.0,
    }
    values.update(overrides)
    return SessionOptions(**values)


async def open_session(
    host: str,
    port: int,
    *,
    bind_ip: str | None = None,
    peer_ip: str | None = None,
    **overrides: Any,
) -> SmtpSession:
    reader, writer = await open_connection(direct_route(bind_ip), host, port, timeout=10)
    session_options = options(**overrides)
    return await SmtpSession.start(reader, writer, "sink.test", session_options, peer_ip=peer_ip)


async def connect(sink: RecordingSink | RawServer, **kwargs: Any) -> SmtpSession:
    return await open_session(sink.host, sink.port, **kwargs)


# -- source address, EHLO, TLS ----------------------------------------------------------


async def test_sink_sees_the_bound_source_ip_and_the_ehlo_name(sink: RecordingSink) -> None:
    for source, name in (("127.0.0.2", "mta2.vmta.test"), ("127.0.0.3", "mta3.vmta.test")):
        session = await connect(sink, bind_ip=source, ehlo_name=name)
        result = await session.send("a@x.test", ["b@y.test"], BODY)
        await session.quit()
        assert result.delivered

    seen = sink.connections
    assert [(c.peer_ip, c.ehlo_name) for c in seen] == [
        ("127.0.0.2", "mta2.vmta.test"),
        ("127.0.0.3", "mta3.vmta.test"),
    ]
    assert [m.data for m in sink.messages] == [BODY, BODY]


async def test_starttls_is_used_when_offered(sink_factory: Any, tls_files: TlsFiles) -> None:
    sink = sink_factory(tls=tls_files)
    session = await connect(sink)
    result = await session.send("a@x.test", ["b@y.test"], BODY)
    await session.quit()

    assert session.tls
    assert result.delivered
    (seen,) = sink.connections
    assert seen.tls
    # RFC 3207 §4.2: EHLO again after the handshake.
    assert seen.ehlo_names == ["mta1.vmta.test", "mta1.vmta.test"]
    assert sink.messages[0].data == BODY


async def test_starttls_never_stays_in_cleartext(sink_factory: Any, tls_files: TlsFiles) -> None:
    sink = sink_factory(tls=tls_files)
    session = await connect(sink, starttls="never")
    await session.send("a@x.test", ["b@y.test"], BODY)
    await session.quit()

    assert not session.tls
    assert not sink.connections[0].tls
    assert "STARTTLS" in session.extensions


async def test_the_verified_policy_refuses_a_self_signed_certificate(
    sink_factory: Any, tls_files: TlsFiles
) -> None:
    sink = sink_factory(tls=tls_files)
    with pytest.raises(SessionDeferred) as caught:
        await connect(sink, tls_policy="verified")

    assert caught.value.stage == "starttls"
    assert "the TLS certificate of sink.test did not verify" in caught.value.reason
    assert "MAIL" not in sink.connections[0].commands


# -- AUTH -------------------------------------------------------------------------------


async def test_auth_plain_over_tls(sink_factory: Any, tls_files: TlsFiles) -> None:
    sink = sink_factory(tls=tls_files, credentials=(USER, PASSWORD), auth_require_tls=True)
    session = await connect(sink, username=USER, password=PASSWORD)
    await session.send("a@x.test", ["b@y.test"], BODY)
    await session.quit()

    assert session.auth_mechanism_used == "PLAIN"
    (seen,) = sink.connections
    assert (seen.tls, seen.auth_identity, seen.auth_mechanism) == (True, USER, "PLAIN")


async def test_auth_login_when_only_login_is_offered(sink_factory: Any) -> None:
    sink = sink_factory(credentials=(USER, PASSWORD), auth_mechanisms=("LOGIN",))
    # No TLS, but the peer is a loopback address: cleartext AUTH is allowed.
    session = await connect(sink, username=USER, password=PASSWORD)
    await session.quit()

    assert session.auth_mechanism_used == "LOGIN"
    (seen,) = sink.connections
    assert (seen.tls, seen.auth_identity, seen.auth_mechanism) == (False, USER, "LOGIN")


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_wrong_password_is_a_permanent_failure_without_the_secret(
    sink_factory: Any, mechanism: str
) -> None:
    sink = sink_factory(credentials=(USER, PASSWORD), auth_mechanisms=(mechanism,))
    with pytest.raises(SessionRejected) as caught:
        await connect(sink, username=USER, password="wrong-password-123")

    assert caught.value.stage == "auth"
    assert caught.value.reply is not None and caught.value.reply.code == 535
    assert "wrong-password-123" not in str(caught.value)
    assert sink.connections[0].auth_identity is None
    assert sink.connections[0].commands[-1] == "QUIT"  # a polite goodbye after the refusal


async def test_credentials_are_not_sent_in_cleartext_to_a_remote_peer(
    sink_factory: Any,
) -> None:
    # The streams are a tunnel (as through a proxy) to a remote destination: the socket
    # peer is loopback, but the destination the rule must judge is 203.0.113.5.
    sink = sink_factory(credentials=(USER, PASSWORD))
    with pytest.raises(CleartextAuthRefused) as caught:
        await connect(sink, peer_ip="203.0.113.5", username=USER, password=PASSWORD)

    assert "refusing to send credentials in cleartext to 203.0.113.5" in str(caught.value)
    assert "AUTH" not in sink.connections[0].commands


def test_cleartext_auth_policy() -> None:
    def allowed(peer: str, tls: bool = False, allow: bool = False) -> bool:
        return cleartext_auth_allowed(peer, tls=tls, allow_plaintext_auth=allow)

    assert not allowed("203.0.113.5")
    assert not allowed("2001:db8::5")
    assert not allowed("")
    assert not allowed("not-an-ip")
    assert allowed("203.0.113.5", tls=True)
    assert allowed("203.0.113.5", allow=True)
    assert allowed("127.0.0.1")
    assert allowed("127.0.0.2")
    assert allowed("::1")
    assert allowed("::ffff:127.0.0.1")


async def test_credentials_but_no_auth_offered_is_refused(sink: RecordingSink) -> None:
    with pytest.raises(SessionRejected) as caught:
        await connect(sink, username=USER, password=PASSWORD)
    assert caught.value.stage == "auth"
    assert "does not offer AUTH" in caught.value.reason


async def test_username_without_password_does_not_authenticate(sink: RecordingSink) -> None:
    # contract §2.5: authentication only when both are set.
    session = await connect(sink, username=USER)
    await session.quit()
    assert session.auth_mechanism_used is None


# -- transactions -----------------------------------------------------------------------


async def test_pipelined_transaction_with_one_refused_recipient(sink: RecordingSink) -> None:
    sink.refuse("nobody@y.test", "550 5.1.1 No such user here")
    session = await connect(sink)
    result = await session.send("a@x.test", ["one@y.test", "nobody@y.test", "two@y.test"], BODY)
    await session.quit()

    assert [r.code for r in result.recipients] == [250, 550, 250]
    assert result.recipients[1].enhanced == "5.1.1"
    assert result.recipients[1].text == "No such user here"
    assert result.data is not None and result.data.code == 250
    assert [r.code for r in result.outcomes()] == [250, 550, 250]
    (seen,) = sink.connections
    assert seen.commands[:5] == ["MAIL", "RCPT", "RCPT", "RCPT", "DATA"]
    # MAIL arrived with the RCPTs and DATA already queued behind it: one write.
    assert seen.pipelined[:4] == ["MAIL", "RCPT", "RCPT", "RCPT"]
    assert sink.messages[0].rcpt_tos == ["one@y.test", "two@y.test"]


async def test_without_pipelining_commands_go_one_at_a_time(sink_factory: Any) -> None:
    sink = sink_factory(pipelining=False)
    sink.refuse("nobody@y.test")
    session = await connect(sink)
    result = await session.send("a@x.test", ["one@y.test", "nobody@y.test"], BODY)
    await session.quit()

    assert [r.code for r in result.recipients] == [250, 550]
    assert result.delivered
    assert sink.connections[0].pipelined == []
    assert sink.messages[0].rcpt_tos == ["one@y.test"]


@pytest.mark.parametrize("pipelining", [True, False])
async def test_every_recipient_refused_resets_instead_of_sending_data(
    sink_factory: Any, pipelining: bool
) -> None:
    sink = sink_factory(pipelining=pipelining)
    sink.refuse("x@y.test")
    sink.refuse("z@y.test", "450 4.2.1 Mailbox busy")
    session = await connect(sink)
    result = await session.send("a@x.test", ["x@y.test", "z@y.test"], BODY)
    again = await session.send("a@x.test", ["ok@y.test"], BODY)
    await session.quit()

    assert result.data is None
    assert [r.code for r in result.outcomes()] == [550, 450]
    assert again.delivered
    (seen,) = sink.connections
    # Pipelined, DATA went out with the RCPTs (and was refused); one at a time, it never did.
    expected = ["MAIL", "RCPT", "RCPT", *(["DATA"] if pipelining else []), "RSET"]
    assert seen.commands[: len(expected)] == expected
    assert [m.rcpt_tos for m in sink.messages] == [["ok@y.test"]]


async def test_dot_stuffing_round_trip_is_byte_identical(sink: RecordingSink) -> None:
    body = (
        b".starts with a dot\r\n"
        b"Subject: dots\r\n\r\n"
        b".\r\n"
        b"..\r\n"
        b"...three\r\n"
        b" .not at the start\r\n"
        b".\r\n.\r\n"
        b"end\r\n"
    )
    session = await connect(sink)
    result = await session.send("a@x.test", ["b@y.test"], body)
    await session.quit()

    assert result.delivered
    assert sink.messages[0].data == body


async def test_bare_line_feeds_become_crlf(sink: RecordingSink) -> None:
    session = await connect(sink)
    await session.send("a@x.test", ["b@y.test"], b"Subject: lf\n\n.line\nlast line without end")
    await session.quit()
    assert sink.messages[0].data == b"Subject: lf\r\n\r\n.line\r\nlast line without end\r\n"


def test_wire_form_and_its_size_before_stuffing() -> None:
    wire = to_wire(b".a\nb\r\n")
    assert (wire_size(wire), wire) == (len(b".a\r\nb\r\n"), b"..a\r\nb\r\n")
    assert (to_wire(b""), wire_size(b"")) == (b"", 0)


async def test_send_wire_writes_the_stored_bytes_and_the_dot(sink: RecordingSink) -> None:
    session = await connect(sink)
    wire = b"Subject: w\r\n\r\n..one\r\n...two\r\nend\r\n"
    result = await session.send_wire("a@x.test", ["b@y.test"], wire)
    await session.quit()
    assert result.delivered
    assert sink.messages[0].data == b"Subject: w\r\n\r\n.one\r\n..two\r\nend\r\n"


async def test_rset_then_a_second_message_on_one_connection(sink: RecordingSink) -> None:
    session = await connect(sink)
    first = await session.send("a@x.test", ["b@y.test"], b"Subject: one\r\n\r\n1\r\n")
    reset = await session.reset()
    second = await session.send("c@x.test", ["d@y.test"], b"Subject: two\r\n\r\n2\r\n")
    await session.quit()

    assert first.delivered and second.delivered and reset.code == 250
    (seen,) = sink.connections
    assert "RSET" in seen.commands
    assert [(t.mail_from, t.rcpt_tos) for t in seen.transactions] == [
        ("a@x.test", ["b@y.test"]),
        ("c@x.test", ["d@y.test"]),
    ]


async def test_8bit_body_is_announced_and_arrives_intact(sink: RecordingSink) -> None:
    body = "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\nGrüße aus Köln\r\n".encode()
    session = await connect(sink)
    await session.send("a@x.test", ["b@y.test"], body)
    await session.send("a@x.test", ["b@y.test"], BODY)
    await session.quit()

    eight_bit, seven_bit = sink.messages
    assert eight_bit.data == body
    assert "BODY=8BITMIME" in eight_bit.mail_options
    assert f"SIZE={len(body)}" in eight_bit.mail_options
    assert "BODY=8BITMIME" not in seven_bit.mail_options


async def test_large_body_with_many_dot_lines(sink: RecordingSink) -> None:
    body = b"Subject: big\r\n\r\n" + b".dot line\r\nplain line of text\r\n" * 50_000
    session = await connect(sink)
    result = await session.send("a@x.test", ["b@y.test"], body)
    await session.quit()
    assert result.delivered
    assert sink.messages[0].data == body


async def test_temporary_mail_refusal_then_success(sink: RecordingSink) -> None:
    sink.script("MAIL", "451 4.3.0 Try again later")
    session = await connect(sink)
    refused = await session.send("a@x.test", ["b@y.test", "c@y.test"], BODY)
    accepted = await session.send("a@x.test", ["b@y.test"], BODY)
    await session.quit()

    assert refused.mail.is_temporary and refused.mail.enhanced == "4.3.0"
    assert [r.code for r in refused.outcomes()] == [451, 451]
    assert refused.data is None
    assert accepted.delivered
    assert len(sink.messages) == 1


async def test_end_of_data_reply_decides_for_accepted_recipients(sink: RecordingSink) -> None:
    sink.refuse("gone@y.test")
    sink.script("DATA", "452 4.3.1 Insufficient system storage")
    session = await connect(sink)
    result = await session.send("a@x.test", ["b@y.test", "gone@y.test"], BODY)
    assert session.can_send
    await session.quit()

    assert [r.code for r in result.outcomes()] == [452, 550]
    assert not result.delivered


async def test_421_in_the_middle_ends_the_session(sink: RecordingSink) -> None:
    sink.script("RCPT", "250 2.1.5 OK", "421 4.3.2 Shutting down")
    session = await connect(sink)
    result = await session.send("a@x.test", ["b@y.test", "c@y.test"], BODY)
    await session.quit()

    assert [r.code for r in result.outcomes()] == [421, 421]
    assert not session.can_send
    assert sink.messages == []


async def test_ehlo_refused_falls_back_to_helo(sink: RecordingSink) -> None:
    sink.script("EHLO", "502 5.5.1 EHLO not implemented")
    session = await connect(sink)
    result = await session.send("a@x.test", ["b@y.test"], BODY)
    await session.quit()

    assert session.extensions == {}
    assert result.delivered
    (seen,) = sink.connections
    assert seen.ehlo_names == ["mta1.vmta.test", "mta1.vmta.test"]  # EHLO, then HELO
    assert seen.pipelined == []
    assert sink.messages[0].mail_options == []  # no SIZE or BODY without EHLO


async def test_dropped_connection_mid_transaction_is_temporary(sink: RecordingSink) -> None:
    sink.script("DATA", DROP)
    session = await connect(sink)
    with pytest.raises(SessionDeferred) as caught:
        await session.send("a@x.test", ["b@y.test"], BODY)
    await session.quit()  # must not hang or raise on a dead connection

    assert caught.value.stage == "transaction"
    assert "closed the connection" in caught.value.reason
    assert not session.can_send
    assert sink.messages == []
    # Cut after the final dot, not timed out: MailerQ's message/lost.
    assert (session.mq_state, caught.value.timed_out, session.transactions) == (
        "message",
        False,
        1,
    )


async def test_addresses_that_could_inject_commands_are_refused(sink: RecordingSink) -> None:
    session = await connect(sink)
    with pytest.raises(InvalidEnvelope):
        await session.send("a@x.test", ["b@y.test>\r\nRCPT TO:<evil@z.test"], BODY)
    with pytest.raises(InvalidEnvelope):
        await session.send("a@x.test", [], BODY)
    await session.quit()
    assert "MAIL" not in sink.connections[0].commands


async def test_the_sink_counts_concurrent_connections(sink: RecordingSink) -> None:
    sessions = await asyncio.gather(*(connect(sink) for _ in range(3)))
    for session in sessions:
        await session.quit()
    assert sink.max_concurrent == 3


# -- misbehaving servers ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("greeting", "error", "goodbye"),
    [
        # RFC 5321 §3.1: after a 554 greeting the client sends QUIT.
        ("554 5.3.2 No service", SessionRejected, b"QUIT\r\n"),
        # RFC 5321 §3.8: 421 means the server is closing the channel; nothing more to say.
        ("421 4.3.2 busy", SessionDeferred, b""),
    ],
)
async def test_a_refusing_greeting_is_classified_by_its_code(
    raw_server: Any, greeting: str, error: type[Exception], goodbye: bytes
) -> None:
    server = await raw_server(smtp_script(greeting, {}, default="221 Bye"))
    with pytest.raises(error) as caught:
        await connect(server)
    assert caught.value.stage == "greeting"  # type: ignore[attr-defined]
    assert caught.value.mq_state == "intro"  # type: ignore[attr-defined]
    assert caught.value.reply.code == int(greeting[:3])  # type: ignore[attr-defined]
    assert bytes(server.received[0]) == goodbye


async def test_a_server_that_never_answers_times_out(raw_server: Any) -> None:
    server = await raw_server(
        smtp_script("220 slow.test", {"EHLO": "250-slow.test\r\n250 8BITMIME", "MAIL": SILENT})
    )
    session = await connect(server, command_timeout=0.5)
    with pytest.raises(SessionDeferred) as caught:
        await session.send("a@x.test", ["b@y.test"], BODY)
    await session.quit()
    assert "did not answer within 0.5 s" in caught.value.reason
    # MailerQ's words for it: the attempt ended at MAIL FROM, for want of an answer.
    assert caught.value.timed_out and session.mq_state == "mailfrom"


async def test_a_malformed_reply_is_a_temporary_failure(raw_server: Any) -> None:
    server = await raw_server(smtp_script("220 odd.test", {"EHLO": "hello there"}))
    with pytest.raises(SessionDeferred) as caught:
        await connect(server)
    assert caught.value.stage == "ehlo"
    assert "malformed reply" in caught.value.reason
    assert (caught.value.mq_state, caught.value.timed_out) == ("ehlo", False)


async def test_a_server_that_closes_after_the_greeting(raw_server: Any) -> None:
    server = await raw_server(smtp_script("220 short.test", {"EHLO": CLOSE}))
    with pytest.raises(SessionDeferred) as caught:
        await connect(server)
    assert "closed the connection" in caught.value.reason


async def test_data_sent_with_the_starttls_answer_is_not_trusted(raw_server: Any) -> None:
    # RFC 3207 §6: a reply injected before the handshake must not be read as if it came
    # over TLS.
    server = await raw_server(
        smtp_script(
            "220 inject.test",
            {"EHLO": "250-inject.test\r\n250 STARTTLS", "STARTTLS": "220 Go ahead\r\n250 fake"},
        )
    )
    with pytest.raises(SessionDeferred) as caught:
        await connect(server)
    assert caught.value.stage == "starttls"
    assert "sent data after its 220" in caught.value.reason


async def test_dot_alone_after_354_when_no_recipient_was_accepted(raw_server: Any) -> None:
    # RFC 2920 §3.1: a server that accepts DATA although it refused every RCPT gets a
    # lone dot, and the transaction counts as not delivered.
    server = await raw_server(
        smtp_script(
            "220 odd.test",
            {
                "EHLO": "250-odd.test\r\n250 PIPELINING",
                "RCPT": "550 5.1.1 no",
                "DATA": "354 go on",
                ".": "250 accepted nothing",
            },
        )
    )
    session = await connect(server)
    result = await session.send("a@x.test", ["b@y.test"], BODY)
    await session.quit()

    assert result.data is None and not result.delivered
    received = bytes(server.received[0])
    assert b"DATA\r\n.\r\nRSET\r\n" in received
    assert b"Hello." not in received


# -- RSET pipelined with the next transaction (RFC 2920) ----------------------------------


def _withholding_rset(rset_reply: str, seen: list[bytes], done: asyncio.Event) -> Any:
    """An SMTP server advertising PIPELINING that answers nothing after its first message
    until it holds both an RSET and the MAIL that follows it: a client that waited for
    the RSET's reply before sending MAIL would wait forever (its timeout fails the test)."""

    async def handler(reader: Any, writer: asyncio.StreamWriter) -> None:
        async def say(*lines: str) -> None:
            writer.write("".join(f"{line}\r\n" for line in lines).encode())
            await writer.drain()

        await say("220 raw.test ESMTP")
        assert (await reader.readline()).startswith(b"EHLO")
        await say("250-raw.test", "250 PIPELINING")
        for message in range(2):
            lines = [await reader.readline() for _ in range(3 if message == 0 else 4)]
            seen.extend(lines)
            if message == 1:
                assert lines[0] == b"RSET\r\n" and lines[1].startswith(b"MAIL FROM:")
                await say(rset_reply)
                if not rset_reply.startswith("2"):
                    await say("250 2.1.0 OK", "250 2.1.5 OK", "354 go on")
                    seen.append(await reader.read(100))  # b"" once the client hangs up
                    done.set()
                    return
            await say("250 2.1.0 OK", "250 2.1.5 OK", "354 go on")
            while (line := await reader.readline()) != b".\r\n":
                seen.append(line)
            await say(f"250 2.0.0 queued {message}")
        seen.append(await reader.readline())  # QUIT
        await say("221 bye")
        done.set()

    return handler


async def test_rset_goes_in_one_group_with_the_next_mail(raw_server: Any) -> None:
    seen: list[bytes] = []
    server = await raw_server(_withholding_rset("250 2.0.0 reset", seen, asyncio.Event()))
    session = await connect(server, command_timeout=5.0)
    first = await session.send("a@x.test", ["b@y.test"], b"Subject: one\r\n\r\n1\r\n")
    assert await session.reset_for_next() is None  # owed, not sent yet
    second = await session.send("c@x.test", ["d@y.test"], b"Subject: two\r\n\r\n2\r\n")
    await session.quit()

    assert first.delivered and second.delivered
    assert seen.count(b"RSET\r\n") == 1 and seen[-1] == b"QUIT\r\n"


async def test_a_refused_pipelined_rset_drops_the_connection_before_any_data(
    raw_server: Any,
) -> None:
    seen: list[bytes] = []
    done = asyncio.Event()
    server = await raw_server(_withholding_rset("500 5.5.1 no RSET today", seen, done))
    session = await connect(server, command_timeout=5.0)
    await session.send("a@x.test", ["b@y.test"], b"Subject: one\r\n\r\n1\r\n")
    await session.reset_for_next()
    with pytest.raises(SessionDeferred, match="RSET"):
        await session.send("c@x.test", ["d@y.test"], b"Subject: two\r\n\r\nsecret 2\r\n")

    assert not session.can_send
    # The server saw the connection end without a byte of the second message.
    async with asyncio.timeout(5):
        await done.wait()
    assert seen[-1] == b""
    assert not any(b"secret 2" in line for line in seen)
