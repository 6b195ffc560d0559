"""Wire form (domain/message/wire_form.py): the form the spool keeps bodies in. What a receiver
gets from it (un-stuffed) is the message as given with CRLF line ends, and a body taken
from SMTP DATA is kept as it came exactly when that is what un-stuffing and stuffing it
again would give (RFC 5321 §4.5.2, §2.3.8)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from vmta.domain.message.wire_form import (
    crlf_only,
    from_smtp_data,
    is_wire_form,
    to_wire,
    unstuffed,
    wire_size,
)
from vmta.smtp.data_collector import DataCollector

# Messages made of the pieces that matter: dots, CR, LF, CRLF and ordinary text.
messages = st.lists(st.sampled_from([b".", b"..", b"\r", b"\n", b"\r\n", b"a", b" "])).map(b"".join)


def crlf_lines(data: bytes) -> bytes:
    """What vmta has always sent for ``data``: bare CR and LF made CRLF, a final CRLF."""
    data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    return data + b"\r\n" if data and not data.endswith(b"\r\n") else data


@given(messages)
def test_the_receiver_gets_the_message_with_crlf_line_ends(data: bytes) -> None:
    wire = to_wire(data)
    assert is_wire_form(wire)
    assert unstuffed(wire) == crlf_lines(data)
    assert wire_size(wire) == len(crlf_lines(data))  # RFC 1870 §3: before stuffing
    # No line of the wire form ends the data early.
    assert not (b"\r\n" + wire).count(b"\r\n.\r\n")


@given(messages)
def test_smtp_data_is_stored_as_vmta_stored_and_sent_it_before(sent: bytes) -> None:
    """Before wire form: un-stuffed at DATA, stored, made CRLF and stuffed at each attempt.
    Now: kept as sent when that gives the same bytes, made wire form otherwise."""
    if not sent.endswith(b"\r\n"):
        sent += b"\r\n"  # DATA's last line always ends in CRLF
    before = to_wire(unstuffed(sent))
    assert from_smtp_data(sent) == before
    assert (from_smtp_data(sent) is sent) == is_wire_form(sent)


@given(messages)
def test_crlf_only_finds_every_bare_cr_and_lf(data: bytes) -> None:
    assert crlf_only(data) == (
        b"\r" not in data.replace(b"\r\n", b"") and b"\n" not in data.replace(b"\r\n", b"")
    )


def test_what_is_and_is_not_wire_form() -> None:
    assert is_wire_form(b"") and is_wire_form(b"a\r\n..b\r\n...\r\n")
    assert not is_wire_form(b"a\r\n.b\r\n")  # a single leading dot: the server drops it
    assert not is_wire_form(b".a\r\n")
    assert not is_wire_form(b"a\nb\r\n") and not is_wire_form(b"a\rb\r\n")
    assert not is_wire_form(b"no final line end")


def test_the_collector_keeps_a_clean_message_as_it_came() -> None:
    sent = b"Subject: s\r\n\r\n..dotted\r\nplain\r\n"
    collector = DataCollector(None, 1001)
    assert collector.feed(sent + b".\r\n") is not None
    assert collector.wire() == sent
    assert collector.content() == b"Subject: s\r\n\r\n.dotted\r\nplain\r\n"


@given(messages)
def test_the_collector_gives_the_wire_form_of_its_content(body: bytes) -> None:
    sent = body + b"\r\n"
    if b"\r\n.\r\n" in b"\r\n" + sent:
        return  # the end of data would come earlier
    collector = DataCollector(None, 100_000)
    assert collector.feed(sent + b".\r\n") is not None
    assert collector.wire() == to_wire(collector.content())


@given(messages, st.lists(st.integers(min_value=1, max_value=9), max_size=30))
def test_the_collector_finds_single_dots_across_chunks(body: bytes, sizes: list[int]) -> None:
    """Whatever the chunks, the end of data is found where it is and the wire form is
    the same as from one chunk."""
    sent = body + b"\r\n"
    if b"\r\n.\r\n" in b"\r\n" + sent:
        return
    stream = sent + b".\r\nQUIT\r\n"
    collector = DataCollector(None, 100_000)
    at = 0
    for size in [*sizes, len(stream)]:
        used = collector.feed(stream[at : at + size])
        if used is not None:
            assert at + used == len(sent) + 3
            break
        at += size
    assert collector.wire() == to_wire(unstuffed(sent)) == to_wire(collector.content())
