"""A message in wire form: the bytes an SMTP client writes after DATA, before the final
dot (RFC 5321 §4.5.2, §2.3.8). The spool stores bodies in this form, so that sending one
is writing the stored bytes and ".\r\n", nothing more.

Wire form means: every line ends in CRLF (a bare CR or LF became CRLF), the last line
too, and every line that starts with "." has one more "." in front (dot-stuffing, the
transparency procedure of RFC 5321 §4.5.2). The empty message is empty. The message
itself, as a reader or a DKIM verifier sees it, is the wire form with one leading "."
taken off each line that has one (``unstuffed``).

Rows stored before wire form (schema revision 0013 and older) hold the message as it was
given: any line ends, no dot-stuffing, perhaps no final CRLF. Each row says which it
holds (``AS_GIVEN``, ``WIRE``), and the spool turns an old row into wire form as it
reads it (docs/architecture.md, "Bodies in wire form").
"""

from __future__ import annotations

import re

# The spool's ``messages.body_format``: what its ``body`` holds.
AS_GIVEN = 0  # as vmta received it (revision 0013 and older): not dot-stuffed, any line ends
WIRE = 1  # wire form

# Scans of a whole message run as regular expressions where that is faster: Python
# 3.11's search for a literal prefix is quicker than ``bytes.find`` and ``bytes.count``
# with a needle of two or three bytes. For a 100 KB message (docs/PERFORMANCE.md round 7):
# a CR that does not begin a CRLF, 29 µs against 72 µs for counting the CRLFs; the lines
# that start with "." (CRLF "."), 24 µs against 58 µs. Both also take a bytearray.
_BARE_CR = re.compile(rb"\r(?!\n)")
_DOT_LINE = re.compile(rb"\r\n\.")
DOT_LINE_SEARCH = _DOT_LINE.search  # (data, start): the next CRLF "." from ``start``


def to_wire(data: bytes) -> bytes:
    """``data`` (a message as given, not dot-stuffed) in wire form. Each step is one bytes
    operation over the whole message, and only when it changes something."""
    crlf = data.count(b"\r\n")
    if data.count(b"\n") != crlf or data.count(b"\r") != crlf:
        # RFC 5321 §2.3.8: lines end in CRLF; a bare CR or LF ends a line too.
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    if data.startswith(b"."):
        data = b"." + data
    if b"\r\n." in data:
        data = data.replace(b"\r\n.", b"\r\n..")
    return data


def unstuffed(wire: bytes) -> bytes:
    """The message that ``wire`` carries: one leading "." removed from each line that has
    one, as the receiving server does (RFC 5321 §4.5.2)."""
    if wire.startswith(b"."):
        wire = wire[1:]
    return wire.replace(b"\r\n.", b"\r\n") if b"\r\n." in wire else wire


def wire_size(wire: bytes) -> int:
    """The message's size for SIZE (RFC 1870 §3): octets with the CRLFs, without the
    stuffed dots and without the final dot line."""
    return len(wire) - len(_DOT_LINE.findall(wire)) - (1 if wire.startswith(b".") else 0)


def crlf_only(data: bytes) -> bool:
    """No bare CR and no bare LF in ``data``. With no bare CR every CR begins a CRLF, so
    there is no bare LF either exactly when the LFs are as many as the CRs: two counts of
    one byte and one search, each a C-speed scan."""
    return data.count(b"\n") == data.count(b"\r") and _BARE_CR.search(data) is None


def is_wire_form(data: bytes) -> bool:
    """Whether ``data``, as an SMTP client sent it after DATA, is already in wire form:
    no bare CR or LF, a final CRLF, and every line starting with "." stuffed (starting
    with ".."). Then keeping it as it came is exactly un-stuffing and stuffing it again.
    A line sent with a single leading "." is not: the server removes that dot
    (RFC 5321 §4.5.2), and the line must be stored without it."""
    if not crlf_only(data):
        return False
    if data and not data.endswith(b"\r\n"):
        return False
    if data.startswith(b".") and not data.startswith(b".."):
        return False
    at = data.find(b"\r\n.")
    while at >= 0:
        if data[at + 3 : at + 4] != b".":
            return False
        at = data.find(b"\r\n.", at + 4)
    return True


def from_smtp_data(data: bytes) -> bytes:
    """The wire form of what a client sent after DATA (without the final dot line): kept
    as it is when it is wire form already, the common case; otherwise un-stuffed as
    received (RFC 5321 §4.5.2) and made wire form as any other message, which gives the
    same bytes as vmta stored and sent before bodies were kept in wire form."""
    if is_wire_form(data):
        return data
    return to_wire(unstuffed(data))
