"""Reading and editing the header block of an injected message (RFC 5322 §2.2).

Only what the injection edge needs: find the VirtualMTA selector headers, remove them,
and prepend a ``Received`` trace header (RFC 5321 §4.4). The body is never parsed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vmta.domain.paths.mta_selector import selector_target

GREENARROW_SELECTOR = "x-greenarrow-mtaid"
POWERMTA_SELECTOR = "x-virtual-mta"
# Every header of this prefix is an instruction to the MTA, never meant for the recipient:
# GreenArrow removes them all before delivery, and so does vmta.
GREENARROW_PREFIX = "x-greenarrow-"
# The ones whose values belong to the message's record and its events (campaign, list
# and tracking ids), kept under these names when the headers are removed.
KEPT_GREENARROW_HEADERS = {
    "x-greenarrow-mailclass": "X-GreenArrow-MailClass",
    "x-greenarrow-sendid": "X-GreenArrow-SendID",
    "x-greenarrow-listid": "X-GreenArrow-ListID",
    "x-greenarrow-instanceid": "X-GreenArrow-InstanceID",
    "x-greenarrow-click-tracking-id": "X-GreenArrow-Click-Tracking-ID",
}


@dataclass(frozen=True)
class HeaderSplit:
    headers: list[bytes]  # each a complete field, continuation lines included, with CRLF
    rest: bytes  # the blank line and the body, untouched


def split_headers(data: bytes) -> HeaderSplit:
    """Split ``data`` into header fields and the rest. A message without a blank line is
    all header (RFC 5322 allows an absent body)."""
    fields: list[bytes] = []
    position = 0
    length = len(data)
    while position < length:
        end = data.find(b"\n", position)
        line_end = length if end == -1 else end + 1
        line = data[position:line_end]
        if line in (b"\r\n", b"\n"):
            break
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line  # folded continuation of the previous field
        elif b":" not in line:
            break  # not a header line: treat the rest as body
        else:
            fields.append(line)
        position = line_end
    return HeaderSplit(fields, data[position:])


def field_name(field: bytes) -> str:
    return field.split(b":", 1)[0].strip().decode("ascii", "replace").lower()


def field_value(field: bytes) -> str:
    raw = field.split(b":", 1)[1] if b":" in field else b""
    # Unfold (RFC 5322 §2.2.3) and trim.
    return b" ".join(raw.replace(b"\r\n", b"\n").split(b"\n")).decode("utf-8", "replace").strip()


@dataclass(frozen=True)
class Selection:
    """What the sender asked for, the message with the selector headers (and every other
    ``X-GreenArrow-*`` header) removed, and the values of the kept ones by header name."""

    selector: str | None
    data: bytes
    kept: dict[str, str] = field(default_factory=dict)


def take_selector(data: bytes, *, honour_powermta: bool) -> Selection:
    """Find the VirtualMTA the message asks for and remove every selector header.

    ``X-GreenArrow-MtaID`` selects; ``X-Virtual-MTA`` does too when enabled, and wins when
    both are present (it is the more specific, per-message PowerMTA convention operators
    migrating from PowerMTA rely on). Both are always removed before delivery, as is
    every other ``X-GreenArrow-*`` header; the values of the campaign and tracking ones
    (``KEPT_GREENARROW_HEADERS``, the first of each name) are returned in ``kept``. A value
    that cannot name any VirtualMTA (``selector_target``) counts as absent, so it is never
    stored (a NUL in it would break a PostgreSQL text column) and the default applies.
    """
    split = split_headers(data)
    greenarrow: str | None = None
    powermta: str | None = None
    remaining: list[bytes] = []
    kept: dict[str, str] = {}
    for header in split.headers:
        name = field_name(header)
        if name == GREENARROW_SELECTOR:
            greenarrow = greenarrow or field_value(header) or None
        elif name == POWERMTA_SELECTOR:
            powermta = powermta or field_value(header) or None
        elif name.startswith(GREENARROW_PREFIX):
            known = KEPT_GREENARROW_HEADERS.get(name)
            if known is not None and known not in kept:
                kept[known] = field_value(header)
        else:
            remaining.append(header)
    selector = (powermta if honour_powermta else None) or greenarrow
    if selector is not None and selector_target(selector).names_nothing:
        selector = None
    if len(remaining) == len(split.headers):
        return Selection(selector, data)
    return Selection(selector, b"".join(remaining) + split.rest, kept)


def with_trace_header(data: bytes, received: str) -> bytes:
    """Prepend a Received field; trace fields go on top (RFC 5321 §4.4)."""
    return received.encode("utf-8") + b"\r\n" + data
