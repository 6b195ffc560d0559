"""The Message-ID field of a stored message, read for logs and searches."""

from __future__ import annotations

import re

_MESSAGE_ID = re.compile(rb"(?im)^message-id:[ \t]*(.*(?:\r?\n[ \t].*)*)")
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_PRINTABLE_LIMIT = 200


def message_id_of(data: bytes) -> str | None:
    """The Message-ID field's value (RFC 5322 §3.6.4) from the header section of
    ``data``, unfolded, printable and bounded for a log line; None without one."""
    end = _HEADER_END.search(data)
    head = data[: end.start() + 1] if end else data
    match = _MESSAGE_ID.search(head)
    if match is None:
        return None
    value = b" ".join(match.group(1).split()).decode("ascii", "replace")
    if not value.isprintable():  # nearly every Message-ID is: no walk through it
        value = "".join(ch if ch.isprintable() else "?" for ch in value)
    return value[:_PRINTABLE_LIMIT] or None
