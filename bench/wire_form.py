"""What storing bodies in wire form saves (issue #26): CPU per message of the intake and of
the send path, before (bodies stored as given) and after (stored in wire form).

    .venv/bin/python bench/wire_form.py [--size BYTES] [--seconds S]

Method, printed with the figures:

1. One message of ``--size`` bytes (default 100 KB): the headers of a bulk message and a
   body of 76-character lines, one line in 100 starting with "." (dot-stuffed on the wire),
   given to the DATA collector (smtp/data_collector.py) in one chunk, as the client sent
   it. Revision 0013's collector searched for the end of data only; today's searches
   every line starting with "." (the end is one of them).
2. Each path runs in a loop in this one process for ``--seconds`` (after a warm-up); the
   figure is the mean CPU time (``process_time``) per message.
   - intake, before: revision 0013's collection and ``content()`` (un-stuffed), the
     header edits of the
     intake (hop count, selector and x-mq-* headers, the Received field), DKIM (when
     asked) with the signer of revision 0013 (line ends made CRLF, then hashed), and the
     length for the ``size`` column;
   - intake, after: the collection and ``wire()``, the same header edits, ``sign_wire`` and
     the length for the ``size`` column;
   - send, before: ``prepare_data`` of revision 0013 (bare CR/LF counts, stuffing, the
     final dot appended) and the 8BITMIME check; after: ``wire_size`` for SIZE and the
     8BITMIME check (the stored bytes and the final dot are written as they are).
3. Each "after" result is checked against "before" (same bytes on the wire, the same
   DKIM body hash) before timing, so that a broken path cannot win.

The "before" functions are copies of revision 0013's, kept here for the comparison.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import platform
import time
from collections.abc import Callable

from vmta.domain.message.message_headers import take_selector, with_trace_header
from vmta.domain.message.mq_message import take_mq_headers
from vmta.domain.message.wire_form import unstuffed, wire_size
from vmta.domain.paths.mail_loops import check_hops
from vmta.signing.keys import generate, load
from vmta.signing.signer import Signature, canonical_body, sign, sign_wire
from vmta.smtp.data_collector import END, DataCollector

HEAD = (
    "From: News <news@example.com>\r\nTo: someone@example.net\r\nSubject: The weekly letter\r\n"
    "Date: Mon, 07 Dec 2026 03:00:00 +0000\r\nMessage-ID: <abc.123@example.com>\r\n"
    "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
)
RECEIVED = (
    "Received: from client ([127.0.0.1])\r\n\tby vmta.test (vmta) with ESMTP id Q1;\r\n"
    "\tMon, 07 Dec 2026 03:00:00 +0000"
)


def prepare_data_0013(data: bytes) -> tuple[int, bytes]:
    """smtp/transaction.prepare_data of revision 0013."""
    crlf = data.count(b"\r\n")
    if data.count(b"\n") != crlf or data.count(b"\r") != crlf:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    size = len(data)
    if data.startswith(b"."):
        data = b"." + data
    return size, data.replace(b"\r\n.", b"\r\n..") + b".\r\n"


class Collector0013(DataCollector):
    """smtp/data_collector.DataCollector of revision 0013: a search for the end only."""

    def _find_end(self) -> int:
        end = self._data.find(END, self._searched)
        if end < 0:
            self._searched = max(0, len(self._data) - len(END) + 1)
        return end


def collected(sent: bytes, kind: type[DataCollector]) -> DataCollector:
    collector = kind(None, 1001)
    assert collector.feed(sent) is not None
    return collector


def body_hash_0013(message: bytes) -> str:
    """The body hash as revision 0013's signer computed it (normalized, canonical, hashed)."""
    crlf = message.count(b"\r\n")
    if message.count(b"\n") != crlf or message.count(b"\r") != crlf:
        message = message.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    body = message.split(b"\r\n\r\n", 1)[1]
    return base64.b64encode(hashlib.sha256(canonical_body(body, "relaxed")).digest()).decode()


def build(size: int) -> bytes:
    """The message as a client sends it after DATA (dot-stuffed), without the final dot."""
    lines: list[bytes] = []
    total = len(HEAD)
    n = 0
    while total < size:
        text = f"line {n} of the weekly letter, with enough words to fill seventy-six chars"
        line = ("." if n % 100 == 50 else "") + text[:75]
        lines.append(line.encode())
        total += len(line) + 2
        n += 1
    body = b"\r\n".join(lines) + b"\r\n"
    return HEAD.encode() + body.replace(b"\r\n.", b"\r\n..")


def intake_before(sent: bytes, signatures: list[Signature]) -> bytes:
    data = collected(sent, Collector0013).content()
    check_hops(data, 100)
    data = take_mq_headers(take_selector(data, honour_powermta=False).data).data
    if signatures:
        data = sign(data, signatures, 1_800_000_000)
    body = with_trace_header(data, RECEIVED)
    _size = len(body)
    return body


def intake_after(sent: bytes, signatures: list[Signature]) -> bytes:
    wire = collected(sent, DataCollector).wire()
    check_hops(wire, 100)
    wire = take_mq_headers(take_selector(wire, honour_powermta=False).data).data
    if signatures:
        wire = sign_wire(wire, signatures, 1_800_000_000)
    body = with_trace_header(wire, RECEIVED)
    _size = len(body)
    return body


def send_before(stored: bytes) -> bytes:
    _size, wire = prepare_data_0013(stored)
    _eight_bit = stored.isascii()
    return wire


def send_after(stored: bytes) -> list[bytes]:
    _size = wire_size(stored)
    _eight_bit = stored.isascii()
    return [stored, b".\r\n"]  # two writes (smtp/client.py), no concatenation


def per_call(run: Callable[[], object], seconds: float) -> float:
    """Mean CPU seconds of one call of ``run``."""
    for _ in range(20):
        run()
    calls = 0
    started = time.process_time()
    while True:
        for _ in range(50):
            run()
        calls += 50
        spent = time.process_time() - started
        if spent >= seconds:
            return spent / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=102_400)
    parser.add_argument("--seconds", type=float, default=2.0)
    options = parser.parse_args()

    sent = build(options.size) + b".\r\n"
    key = load(generate("rsa", 2048).private_pem)
    dkim = [Signature("example.com", "s1", key)]

    # The same result before and after: bytes on the wire, and the body hash.
    stored_before = intake_before(sent, [])
    stored_after = intake_after(sent, [])
    assert b"".join(send_after(stored_after)) == send_before(stored_before)
    assert unstuffed(stored_after) == stored_before
    signed_after = intake_after(sent, dkim)
    bh = signed_after.split(b"bh=", 1)[1].split(b";", 1)[0].decode()
    assert bh == body_hash_0013(stored_before)

    stuffed = sent.count(b"\r\n..")
    print(f"message: {len(sent)} bytes as sent, {stuffed} stuffed lines")
    print(f"python {platform.python_version()}, {platform.machine()}; CPU time per message")
    rows = [
        ("intake", lambda: intake_before(sent, []), lambda: intake_after(sent, [])),
        (
            "intake, DKIM rsa-2048",
            lambda: intake_before(sent, dkim),
            lambda: intake_after(sent, dkim),
        ),
        ("send", lambda: send_before(stored_before), lambda: send_after(stored_after)),
    ]
    print(f"{'path':24} {'before µs':>10} {'after µs':>10} {'saved µs':>10}")
    for name, before, after in rows:
        b = per_call(before, options.seconds) * 1e6
        a = per_call(after, options.seconds) * 1e6
        print(f"{name:24} {b:10.1f} {a:10.1f} {b - a:10.1f}")


if __name__ == "__main__":
    main()
