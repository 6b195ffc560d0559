"""aiosmtpd's SMTP with its DATA state replaced: the data is read in large chunks and
collected by ``DataCollector`` (smtp/data_collector.py says why). Everything else, the
replies included, is aiosmtpd's: its checks before DATA, its 500/552 after an over-long
line or too much data, its handler hook and its state after DATA.

One difference for the handler: ``envelope.content`` and ``envelope.original_content``
hold the message in wire form (dot-stuffed, CRLF: domain/message/wire_form.py), the form the
spool keeps, and not un-stuffed as aiosmtpd gives it.
"""

from __future__ import annotations

import asyncio
import logging

from aiosmtpd.smtp import SMTP

from vmta.smtp.data_collector import DataCollector, DataState

log = logging.getLogger(__name__)

CHUNK = 1 << 20  # more than the reader ever buffers: each read empties it
READ_LIMIT = 64 * 1024  # the reader's buffer limit while DATA is read (see below)


class ChunkedDataSMTP(SMTP):
    async def smtp_DATA(self, arg: str | None) -> None:
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        collector = DataCollector(self.data_size_limit, self.line_length_limit)
        if not await self._collect(collector):
            return  # the connection ended first
        if collector.state is DataState.TOO_LONG:
            await self.push("500 Line too long (see RFC5321 4.5.3.1.6)")
            self._set_post_data_state()
            return
        if collector.state is DataState.TOO_MUCH:
            await self.push("552 Error: Too much mail data")
            self._set_post_data_state()
            return
        # Dot-stuffed: see the module's docstring. No local name keeps the message: the
        # handler may take it out of the envelope (smtp/listener.py), and the collector's
        # buffer, a second copy, is dropped before the handler waits for the spool's
        # commit (peak memory, docs/PERFORMANCE.md rounds 6 and 7).
        self.envelope.content = self.envelope.original_content = collector.wire()
        del collector
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push("250 OK" if status is None or not isinstance(status, str) else status)

    vars(smtp_DATA).update(vars(SMTP.smtp_DATA))  # aiosmtpd's HELP text for DATA

    def _set_post_data_state(self) -> None:
        super()._set_post_data_state()  # type: ignore[no-untyped-call]

    async def _collect(self, collector: DataCollector) -> bool:
        """Read until the end of data. What the client sent after the final dot (the next
        commands, pipelined) is given back to the reader, for aiosmtpd to read next."""
        reader = self._reader
        # aiosmtpd's reader has a limit of one line (1001 bytes), and a StreamReader stops
        # reading from the socket while it holds more than twice its limit: a 100 KB body
        # would pause and resume the transport some fifty times. The limit is raised while
        # DATA is read (a private attribute: StreamReader has no public setter), so the
        # buffer may hold up to twice READ_LIMIT, and set back for the commands after it.
        line_limit = getattr(reader, "_limit", None)
        if line_limit is not None:
            reader._limit = READ_LIMIT  # type: ignore[attr-defined]
        try:
            while self.transport is not None:
                try:
                    chunk = await reader.read(CHUNK)
                except asyncio.CancelledError:
                    log.info("connection lost during DATA")
                    self._writer.close()
                    raise
                if not chunk:
                    return False  # end of the stream before the end of data
                used = collector.feed(chunk)
                if used is not None:
                    # The buffer is empty (each read takes all of it) and nothing can
                    # arrive before this synchronous call: feeding the rest back keeps
                    # the order of the bytes.
                    rest = chunk[used:]
                    if rest and not reader.at_eof():
                        reader.feed_data(rest)
                    return True
            return False
        finally:
            if line_limit is not None:
                reader._limit = line_limit  # type: ignore[attr-defined]
