"""Replies of remote SMTP servers, as values.

A reply is a three-digit code and one or more lines of text (RFC 5321 §4.2). Servers that
offer ENHANCEDSTATUSCODES (RFC 2034) start the text of each line with a status code
``class.subject.detail`` (RFC 3463); we read it whenever its class agrees with the first
digit of the reply code, since some servers send one without advertising the extension.

Replies are never raised: the caller classifies them with ``is_success``,
``is_temporary`` and ``is_permanent``. Only a byte sequence that is not a reply at all
raises ``MalformedReply``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from vmta.domain.errors import TemporaryError

# RFC 5321 §4.2: Reply-code = %x32-35 %x30-35 %x30-39. We accept any second and third
# digit: RFC 5321 §4.2 asks clients to act on the first digit, and real servers use 2xx/4xx/5xx
# codes outside the listed ones.
_REPLY_LINE = re.compile(r"([2-5][0-9][0-9])([ -]|$)(.*)", re.DOTALL)
# RFC 3463 §2: class "." subject "." detail; subject and detail 1-3 digits, no leading zeros
# required, so we accept any 1-3 digits.
_ENHANCED = re.compile(r"([245])\.([0-9]{1,3})\.([0-9]{1,3})(?: +|$)")

MAX_REPLY_LINES = 1000  # a reply longer than this is a misbehaving peer, not a reply


class MalformedReply(TemporaryError):
    """The peer sent bytes that are not an SMTP reply (RFC 5321 §4.2)."""


@dataclass(frozen=True, slots=True)
class SmtpReply:
    """One complete reply: its code, its text (lines joined by "\\n") and enhanced code.

    ``text`` holds the lines without the reply code and without the enhanced status code.
    """

    code: int
    text: str
    enhanced: str | None = None

    @property
    def is_success(self) -> bool:
        return 200 <= self.code < 300

    @property
    def is_intermediate(self) -> bool:
        """3xx: the server waits for more (354 after DATA, 334 during AUTH)."""
        return 300 <= self.code < 400

    @property
    def is_temporary(self) -> bool:
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        return 500 <= self.code < 600

    @property
    def lines(self) -> list[str]:
        return self.text.split("\n")

    def one_line(self) -> str:
        """The reply on one line, for logs and attempt records: ``550 5.1.1 No such user``."""
        parts = [str(self.code)]
        if self.enhanced:
            parts.append(self.enhanced)
        text = " / ".join(line.strip() for line in self.lines if line.strip())
        if text:
            parts.append(text)
        return " ".join(parts)

    def __str__(self) -> str:
        return self.one_line()


@dataclass(frozen=True, slots=True)
class WireReplyLine:
    """One line of a reply: its code, whether it is the last line, and its text."""

    code: int
    last: bool
    text: str


def parse_reply_line(line: str) -> WireReplyLine:
    """Split one line (without its CRLF) into code, continuation mark and text.

    RFC 5321 §4.2: ``code "-" text`` continues the reply, ``code SP text`` or a bare
    ``code`` ends it.
    """
    match = _REPLY_LINE.fullmatch(line)
    if match is None:
        raise MalformedReply(f"not an SMTP reply line: {_excerpt(line)}")
    code, separator, text = match.groups()
    return WireReplyLine(code=int(code), last=separator != "-", text=text)


def build_reply(lines: Iterable[WireReplyLine]) -> SmtpReply:
    """Join parsed lines of one reply; every line must carry the same code."""
    collected = list(lines)
    if not collected:
        raise MalformedReply("empty SMTP reply")
    code = collected[0].code
    if any(line.code != code for line in collected):
        codes = ", ".join(str(line.code) for line in collected)
        raise MalformedReply(f"SMTP reply lines disagree on the code ({codes})")
    enhanced, first = _split_enhanced(code, collected[0].text)
    texts = [first]
    for line in collected[1:]:
        found, text = _split_enhanced(code, line.text)
        texts.append(text if found is not None and found == enhanced else line.text)
    return SmtpReply(code=code, text="\n".join(texts), enhanced=enhanced)


def _split_enhanced(code: int, text: str) -> tuple[str | None, str]:
    """The enhanced status code the text starts with (normalised), and the text after it;
    (None, text) if there is none."""
    match = _ENHANCED.match(text)
    # RFC 3463 §2: the class of the enhanced code equals the reply's first digit;
    # otherwise the text merely starts with something that looks like one.
    if match is None or int(match.group(1)) != code // 100:
        return None, text
    found = f"{match.group(1)}.{int(match.group(2))}.{int(match.group(3))}"
    return found, text[match.end() :]


def parse_reply(text: str) -> SmtpReply:
    """Parse a complete reply given as text, lines separated by CRLF or LF."""
    raw = text.replace("\r\n", "\n").removesuffix("\n").split("\n")
    parsed = [parse_reply_line(line) for line in raw]
    if not parsed[-1].last or any(line.last for line in parsed[:-1]):
        raise MalformedReply("SMTP reply continuation marks are out of order")
    return build_reply(parsed)


# One-line replies a session keeps parsed (its first ones: RSET's, MAIL's, RCPT's and
# DATA's come back unchanged for every message, the end of data's mostly differs).
KNOWN_REPLIES = 32


class ReplyAssembler:
    """Collects reply lines as they arrive and yields the reply once it is complete."""

    def __init__(self) -> None:
        self._lines: list[WireReplyLine] = []
        self._known: dict[str, SmtpReply] = {}

    def feed(self, line: str) -> SmtpReply | None:
        """Add one line (CRLF removed); returns the reply when this line ended it."""
        if not self._lines and (len(line) == 3 or line[3:4] == " "):
            # The everyday reply, one line: "250 2.0.0 Ok" or a bare "250". The same
            # rules as below (RFC 5321 §4.2), without the general path's objects; a
            # line seen before is the same (immutable) reply, not parsed again.
            known = self._known.get(line)
            if known is not None:
                return known
            digits = line[:3]
            if digits.isascii() and digits.isdigit() and "2" <= digits[0] <= "5":
                code = int(digits)
                enhanced, text = _split_enhanced(code, line[4:])
                reply = SmtpReply(code=code, text=text, enhanced=enhanced)
                if len(self._known) < KNOWN_REPLIES:
                    self._known[line] = reply
                return reply
        parsed = parse_reply_line(line)
        self._lines.append(parsed)
        if len(self._lines) > MAX_REPLY_LINES:
            raise MalformedReply(f"SMTP reply longer than {MAX_REPLY_LINES} lines")
        if not parsed.last:
            return None
        lines, self._lines = self._lines, []
        return build_reply(lines)


def _excerpt(line: str, limit: int = 80) -> str:
    shown = line if len(line) <= limit else line[:limit] + "..."
    return repr(shown)
