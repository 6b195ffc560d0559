"""The DATA section of an SMTP transaction, collected from chunks of any size with bytes
operations (RFC 5321 §4.5.2, §4.5.3.1.6, §4.5.3.1.7).

aiosmtpd reads DATA one line at a time: for a 100 KB message that is some 1,300 awaits,
each with its copies and a debug log call, which was most of the interpreter's time at
that size (docs/PERFORMANCE.md). Here the end of data is found with one search per chunk,
the line-length check takes one search per window of the line limit, and dot-stuffing is
undone with one replace. The rules are aiosmtpd's, kept exactly:

- the data ends at a line holding only "." (CRLF . CRLF, or "." CRLF as the first line);
- a line longer than ``line_limit`` bytes (CRLF included) makes the transaction fail with
  500 once the data is complete; more than ``size_limit`` bytes (the lines as sent, CRLFs
  included, the final dot line not) makes it fail with 552. Past either limit the data is
  dropped as it comes, so a hostile client cannot make the server hold it;
- a line that starts with "." loses that "." (RFC 5321 §4.5.2, transparency).

The spool keeps messages in wire form (domain/message/wire_form.py), which is nearly always what
the client sent: ``wire`` keeps the data as it came then, instead of un-stuffing it here
and stuffing it again for every delivery.
"""

from __future__ import annotations

from enum import Enum

from vmta.domain.message.wire_form import DOT_LINE_SEARCH, crlf_only, from_smtp_data

END = b"\r\n.\r\n"
DOT_LINE = b"\r\n."
DOT = ord(".")


class DataState(Enum):
    NOMINAL = "nominal"
    TOO_LONG = "too long"  # a line over the limit (500)
    TOO_MUCH = "too much"  # over the size limit (552)


class DataCollector:
    def __init__(self, size_limit: int | None, line_limit: int) -> None:
        self.size_limit = size_limit or None
        self.line_limit = line_limit
        self.state = DataState.NOMINAL
        # What was sent so far, after a CRLF of our own (``_lead`` bytes of it): then the
        # end is always CRLF . CRLF, even for an empty message whose first line is the dot.
        self._data = bytearray(b"\r\n")
        self._lead = 2
        self._searched = 0  # no line starting with "." begins before this index of _data
        self._single_dot = False  # a line starting with a single "." was sent
        self._line_start = 2  # where the line in progress starts in _data
        self._dropped = 0  # bytes thrown away past a limit

    @property
    def size(self) -> int:
        """Bytes of data received so far, as sent (the final dot line not counted)."""
        return self._dropped + len(self._data) - self._lead

    def feed(self, chunk: bytes) -> int | None:
        """Take the next chunk; None while the end is not in it, else how many of its
        bytes belong to the data (the rest is what the client sent after the dot)."""
        before = len(self._data)
        self._data += chunk
        end = self._find_end()
        if end < 0:
            self._check(len(self._data), complete=False)
            return None
        self._check(end + 2, complete=True)
        del self._data[end + 2 :]  # the CRLF that ends the last line stays
        if self.state is not DataState.NOMINAL:  # refused: nothing is kept
            self._dropped += len(self._data) - self._lead
            self._data.clear()
            self._lead = 0
        return end + len(END) - before

    def _find_end(self) -> int:
        """Where END starts in ``_data``, or -1. The search is for every line that starts
        with "." (CRLF "."), END being one of them, so that the same scan also notes a
        line sent with a single leading "." (``_single_dot``): the data is then not in
        wire form as it came (``wire``). Such lines are rare; each costs one step."""
        data = self._data
        found = DOT_LINE_SEARCH(data, self._searched)
        while found is not None:
            at = found.start()
            after = data[at + 3 : at + 5]
            if len(after) < 2:
                self._searched = at  # decided when more has come
                return -1
            if after == b"\r\n":
                return at
            if after[0] != DOT:
                self._single_dot = True
            found = DOT_LINE_SEARCH(data, at + 3)
        self._searched = max(0, len(data) - len(DOT_LINE) + 1)
        return -1

    def _check(self, stop: int, *, complete: bool) -> None:
        """Apply the limits to what ``_data`` holds up to ``stop`` (``complete``: the
        data ends there)."""
        if self.state is DataState.NOMINAL:
            if self.size_limit is not None and self._dropped + stop - self._lead > self.size_limit:
                self.state = DataState.TOO_MUCH
            elif self._has_long_line(stop):
                self.state = DataState.TOO_LONG
        if self.state is not DataState.NOMINAL and not complete and len(self._data) > 16:
            # Past a limit nothing more is kept but the tail, in which END may begin.
            keep = len(END) - 1
            self._dropped += len(self._data) - keep - self._lead
            del self._data[:-keep]
            self._lead = 0
            self._searched = 0
            self._line_start = 0

    def _has_long_line(self, stop: int) -> bool:
        """Whether a line longer than ``line_limit`` (CRLF included) ends, or has begun,
        between the last check and ``stop``.

        One window of ``line_limit`` bytes at a time, from the start of the line in
        progress: every line that ends inside the window is short enough, so the search
        moves on past the last CRLF in it. A full window without one means the line that
        starts it is too long (it will be at least ``line_limit`` + 1 bytes). The window's
        last LF is found with one memrchr-like search, and is nearly always that CRLF;
        only a bare LF there costs a second search for the CRLF itself. No line is copied
        or split: a 100 KB message takes about a hundred searches."""
        data, limit, start = self._data, self.line_limit, self._line_start
        while True:
            end = min(start + limit, stop)
            # A line's LF is never its first byte (the CR comes before it), hence start + 1.
            lf = data.rfind(b"\n", start + 1, end)
            if lf > 0 and data[lf - 1] != 13:  # a bare LF, which does not end a line
                lf = data.rfind(b"\r\n", start, end) + 1
            if lf <= 0:
                self._line_start = start
                return end - start >= limit
            start = lf + 1

    def content(self) -> bytes:
        """The message (once ``feed`` found the end and the state is NOMINAL), with
        dot-stuffing undone: CRLF "." becomes CRLF, our leading CRLF included."""
        return bytes(self._data.replace(b"\r\n.", b"\r\n")[self._lead :])

    def wire(self) -> bytes:
        """The message in wire form (once ``feed`` found the end and the state is
        NOMINAL): the data as sent when it is wire form already (every line ending in
        CRLF, every line starting with "." stuffed), else what ``content`` gives, made
        wire form (``wire_form.from_smtp_data``)."""
        data = bytes(memoryview(self._data)[self._lead :])
        if not self._single_dot and crlf_only(data):
            return data
        return from_smtp_data(data)
