"""A recorded reply text taken apart: ``550 5.1.1 No such user`` is the code, the
RFC 3463 enhanced status code and the rest (vmta's own reasons have a code too).

Pure: standard library only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_REPLY = re.compile(r"\s*([2-5][0-9]{2})(?:[ -]|$)\s*(?:([245]\.[0-9]{1,3}\.[0-9]{1,3})(?:\s+|$))?")


@dataclass(frozen=True)
class ParsedReply:
    code: int | None
    enhanced: str | None
    description: str


def parse_reply(reply: str | None) -> ParsedReply:
    """Code, enhanced status code and the rest of a recorded reply text."""
    text = reply or ""
    match = _REPLY.match(text)
    if match is None:
        return ParsedReply(None, None, text.strip())
    return ParsedReply(int(match.group(1)), match.group(2), text[match.end() :].strip())
