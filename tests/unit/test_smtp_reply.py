"""Parsing SMTP replies (RFC 5321 §4.2) and enhanced status codes (RFC 3463)."""

from __future__ import annotations

import pytest

from vmta.domain.attempts.smtp_reply import (
    KNOWN_REPLIES,
    MalformedReply,
    ReplyAssembler,
    SmtpReply,
    build_reply,
    parse_reply,
    parse_reply_line,
)


def test_single_line_with_enhanced_code() -> None:
    reply = parse_reply("550 5.1.1 No such user here\r\n")
    assert reply == SmtpReply(550, "No such user here", "5.1.1")
    assert reply.is_permanent and not reply.is_temporary and not reply.is_success
    assert reply.one_line() == "550 5.1.1 No such user here"


def test_multi_line_reply_strips_repeated_enhanced_codes() -> None:
    reply = parse_reply("452-4.2.2 Mailbox full\r\n452-4.2.2 try later\r\n452 4.2.2 bye\r\n")
    assert reply.code == 452 and reply.enhanced == "4.2.2" and reply.is_temporary
    assert reply.lines == ["Mailbox full", "try later", "bye"]
    assert reply.one_line() == "452 4.2.2 Mailbox full / try later / bye"


def test_ehlo_reply_keeps_its_keyword_lines() -> None:
    reply = parse_reply("250-mx.test greets you\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 8BITMIME")
    assert reply.is_success and reply.enhanced is None
    assert reply.lines == ["mx.test greets you", "PIPELINING", "SIZE 1000", "8BITMIME"]


@pytest.mark.parametrize(
    ("text", "code", "enhanced", "rest"),
    [
        ("250", 250, None, ""),  # a bare code ends the reply (RFC 5321 §4.2)
        ("250 ", 250, None, ""),
        ("421 4.3.2 ", 421, "4.3.2", ""),
        ("250 5.0.0 class disagrees", 250, None, "5.0.0 class disagrees"),  # RFC 3463 §2
        ("550 5.01.001 zero padded", 550, "5.1.1", "zero padded"),
        ("554 5.7.1", 554, "5.7.1", ""),
        ("220 mx.test ESMTP", 220, None, "mx.test ESMTP"),
    ],
)
def test_enhanced_code_only_when_its_class_matches(
    text: str, code: int, enhanced: str | None, rest: str
) -> None:
    assert parse_reply(text) == SmtpReply(code, rest, enhanced)


@pytest.mark.parametrize(
    "text",
    ["", "hello", "25 short", "2500 long", "250x", "650 bad class", "250-a\r\n251 b", "250-open"],
)
def test_malformed_replies(text: str) -> None:
    with pytest.raises(MalformedReply):
        parse_reply(text)


def test_assembler_returns_the_reply_on_its_last_line() -> None:
    assembler = ReplyAssembler()
    assert assembler.feed("250-first") is None
    assert assembler.feed("250-second") is None
    assert assembler.feed("250 last") == SmtpReply(250, "first\nsecond\nlast")
    assert assembler.feed("354 go ahead") == SmtpReply(354, "go ahead")


def test_class_predicates() -> None:
    assert SmtpReply(354, "").is_intermediate
    assert SmtpReply(221, "").is_success
    assert SmtpReply(421, "").is_temporary
    assert str(SmtpReply(221, "Bye")) == "221 Bye"


@pytest.mark.parametrize(
    "line",
    [
        "250",
        "250 ",
        "250 Ok",
        "250 2.0.0 Ok: queued as 7F3A",
        "451 4.7.1 Try again later",
        "550 5.1.1 <a@b.test>: no such user",
        "550 4.1.1 class disagrees with the code",
        "554 5.0.0",
        "421 4.4.2 closing   ",
        "220 mx.test ESMTP",
    ],
)
def test_a_one_line_reply_reads_the_same_on_the_short_path(line: str) -> None:
    """ReplyAssembler reads a lone one-line reply without the general path's objects;
    what it returns is what the general path builds."""
    assert ReplyAssembler().feed(line) == build_reply([parse_reply_line(line)])


@pytest.mark.parametrize(
    "line", ["2x0 Ok", "250-more", "650 Ok", "\uff12\uff15\uff10 Ok", "25", "250\tOk"]
)
def test_what_is_not_a_one_line_reply_takes_the_general_path(line: str) -> None:
    """Fullwidth digits (U+FF12...) are digits to str.isdigit, not to RFC 5321."""
    assembler = ReplyAssembler()
    try:
        general: object = build_reply([parse_reply_line(line)])
    except MalformedReply as exc:
        general = type(exc)
    try:
        short: object = assembler.feed(line)
    except MalformedReply as exc:
        short = type(exc)
    if line == "250-more":  # a continuation: no reply yet
        assert short is None
    else:
        assert short == general


def test_a_one_line_reply_seen_before_reads_the_same() -> None:
    """A session keeps its first one-line replies parsed: each comes back equal to what
    the general path builds, between multi-line replies and past the number kept."""
    assembler = ReplyAssembler()
    lines = [f"250 2.0.0 Ok: queued as {n}" for n in range(KNOWN_REPLIES + 5)]
    for _ in range(2):
        assert assembler.feed("250-first") is None
        assert assembler.feed("250 last") == build_reply(
            [parse_reply_line("250-first"), parse_reply_line("250 last")]
        )
        for line in ["250 2.1.0 Ok", "354 End data with <CR><LF>.<CR><LF>", *lines]:
            assert assembler.feed(line) == build_reply([parse_reply_line(line)])
