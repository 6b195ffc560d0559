"""The DATA collector (smtp/data_collector.py): the end of data, transparency and the
limits, whatever the chunks the bytes arrive in (RFC 5321 §4.5.2, §4.5.3.1.6-7)."""

from __future__ import annotations

import random

import pytest

from vmta.smtp.data_collector import DataCollector, DataState

LINE_LIMIT = 1001  # aiosmtpd's: 1000 characters and the CRLF... plus one


def collect(
    wire: bytes, chunks: list[int] | None = None, size_limit: int | None = None
) -> tuple[DataCollector, bytes]:
    """Feed ``wire`` in pieces of the given sizes (the rest at the end); returns the
    collector and what came after the end of data."""
    collector = DataCollector(size_limit, LINE_LIMIT)
    at = 0
    for size in [*(chunks or []), len(wire)]:
        piece = wire[at : at + size]
        used = collector.feed(piece)
        if used is not None:
            return collector, piece[used:] + wire[at + size :]
        at += size
    raise AssertionError("the end of data was not found")


def every_split(wire: bytes) -> list[list[int]]:
    """One byte at a time, every two-piece split, and seeded random splits."""
    rng = random.Random(5321)
    splits = [[1] * len(wire)] + [[i] for i in range(1, len(wire))]
    for _ in range(50):
        sizes, left = [], len(wire)
        while left > 0:
            sizes.append(rng.randint(1, 7))
            left -= sizes[-1]
        splits.append(sizes)
    return splits


@pytest.mark.parametrize(
    ("wire", "content", "after"),
    [
        (b".\r\n", b"", b""),
        (b".\r\nQUIT\r\n", b"", b"QUIT\r\n"),
        (b"Subject: a\r\n\r\nbody\r\n.\r\n", b"Subject: a\r\n\r\nbody\r\n", b""),
        (b"a\r\n..\r\n...b\r\n.c\r\n.\r\nRSET\r\n", b"a\r\n.\r\n..b\r\nc\r\n", b"RSET\r\n"),
        (b"..first\r\n.\r\n", b".first\r\n", b""),
        (b"a\r\n .\r\n.\r\n", b"a\r\n .\r\n", b""),  # " ." is not the end
        (b"bare\nlf.\n.\r\n\r\n.\r\n", b"bare\nlf.\n.\r\n\r\n", b""),
    ],
)
def test_end_of_data_and_transparency_in_any_chunks(
    wire: bytes, content: bytes, after: bytes
) -> None:
    for chunks in every_split(wire):
        collector, rest = collect(wire, chunks)
        assert collector.state is DataState.NOMINAL
        assert (collector.content(), rest) == (content, after), chunks


def test_a_line_of_the_limit_passes_and_one_byte_more_fails_wherever_it_is_cut() -> None:
    longest = b"x" * (LINE_LIMIT - 2) + b"\r\n"
    too_long = b"x" * (LINE_LIMIT - 1) + b"\r\n"
    for line, state in ((longest, DataState.NOMINAL), (too_long, DataState.TOO_LONG)):
        wire = b"a\r\n" + line + b"b\r\n.\r\n"
        for cut in range(1, len(wire)):
            collector, rest = collect(wire, [cut])
            assert (collector.state, rest) == (state, b""), cut


def test_two_lines_meeting_at_a_chunk_edge_are_two_lines() -> None:
    half = b"y" * 900
    wire = half + b"\r\n" + half + b"\r\n.\r\n"
    for cut in (899, 900, 901, 902, 903):  # ... y|\r\n, \r|\n, \r\n|y ...
        collector, _ = collect(wire, [cut])
        assert collector.state is DataState.NOMINAL, cut
        assert collector.content() == half + b"\r\n" + half + b"\r\n"


def test_a_line_without_end_is_too_long_as_soon_as_it_passes_the_limit() -> None:
    collector = DataCollector(None, LINE_LIMIT)
    assert collector.feed(b"z" * (LINE_LIMIT + 1)) is None
    assert collector.state is DataState.TOO_LONG


def test_size_limit_counts_the_lines_as_sent_and_drops_what_is_over() -> None:
    body = b"0123456789\r\n" * 100  # 1,200 bytes as sent
    collector, _ = collect(body + b".\r\n", size_limit=len(body))
    assert collector.state is DataState.NOMINAL and collector.content() == body

    wire = body + b"one more\r\n" + b"q" * 500 + b"\r\n" + b".\r\n"
    for chunks in ([1] * 40 + [7] * 300, [len(body) + 1, 2], [3] * 800):
        collector, rest = collect(wire, chunks, size_limit=len(body))
        assert collector.state is DataState.TOO_MUCH and rest == b""
        assert collector.size == len(wire) - 3  # counted to the end, the dot line not
        assert len(collector._data) < 64  # nothing of it kept past the limit


def test_an_end_split_over_dropped_data_is_still_found() -> None:
    wire = b"w" * 3000 + b"\r\n.\r\nQUIT\r\n"
    for cut in range(2998, 3008):
        collector, rest = collect(wire, [cut], size_limit=100)
        assert collector.state is DataState.TOO_MUCH
        assert rest == b"QUIT\r\n", cut


def longest_line_by_split(content: bytes) -> int:
    """The rule, written the plain way: the longest CRLF-ended line, CRLF included."""
    return max(len(line) + 2 for line in (b"\r\n" + content).split(b"\r\n")[1:-1])


SEEDS = range(60)


def seeded_message(seed: int) -> tuple[bytes, bytes, list[int]]:
    """Lines around the limit, with bare CRs and LFs (which do not end a line) and dots:
    the content, its wire form and the sizes of the chunks it arrives in."""
    rng = random.Random(seed)
    longest = rng.choice([76, 998, 999, LINE_LIMIT - 3, LINE_LIMIT - 2, LINE_LIMIT - 1, 1500])
    lines = []
    for _ in range(rng.randint(1, 40)):
        length = rng.choice([0, 1, 76, longest])
        alphabet = [b"x"] * 200 + [b"\n", b"\r", b"."]
        lines.append(b"".join(rng.choice(alphabet) for _ in range(length)))
    content = b"".join(line + b"\r\n" for line in lines)
    wire = content.replace(b"\r\n.", b"\r\n..")
    if wire.startswith(b"."):
        wire = b"." + wire
    wire += b".\r\n"
    sizes, left = [], len(wire)
    while left > 0:
        sizes.append(rng.choice([1, 2, 3, 500, 1000, 1001, 4096, 65536]))
        left -= sizes[-1]
    return content, wire, sizes


@pytest.mark.parametrize("seed", SEEDS)
def test_the_line_limit_agrees_with_splitting_every_line(seed: int) -> None:
    """Fed in random chunks: TOO_LONG exactly when a line as sent is too long."""
    content, wire, sizes = seeded_message(seed)
    collector, rest = collect(wire, sizes)
    assert rest == b""
    too_long = longest_line_by_split(wire[:-3]) > LINE_LIMIT
    assert (collector.state is DataState.TOO_LONG) == too_long, (seed, too_long)
    if not too_long:
        assert collector.content() == content


def test_the_seeded_messages_hold_both_verdicts() -> None:
    """The table above is no table of one answer: both outcomes occur in it often."""
    verdicts = [longest_line_by_split(seeded_message(s)[1][:-3]) > LINE_LIMIT for s in SEEDS]
    assert 8 <= sum(verdicts) <= 52, sum(verdicts)  # 11 too long, 49 within
