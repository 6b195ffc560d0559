"""SIGHUP: reopen every log file, stop nothing.

logrotate renames a log and then signals the program (``postrotate``), ``systemctl
reload`` sends SIGHUP, and so does a closing terminal. Python's default for SIGHUP ends
the process, which dropped every SMTP session and delivery in flight. Here the signal
reopens delivery.log and any file handler of Python's logging (the new file at the old
path gets the lines from then on; each line is written whole, so the renamed file ends
with complete lines), logs that it did, and is passed on to the worker processes, which
reopen theirs. Sessions, deliveries and the queue are left alone.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Sequence

from vmta.delivery.outcomes.delivery_log import DeliveryLog

log = logging.getLogger(__name__)


class LogFiles:
    def __init__(self, delivery_logs: Sequence[DeliveryLog]) -> None:
        self._delivery_logs = list(delivery_logs)
        self._also: list[Callable[[], None]] = []

    def also(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` on SIGHUP too (the worker pool passes the signal on)."""
        self._also.append(callback)

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_signal_handler(signal.SIGHUP, self.reopen)

    def remove(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.remove_signal_handler(signal.SIGHUP)

    def reopen(self) -> list[str]:
        """Reopen every log file; the paths reopened (also logged)."""
        reopened: list[str] = []
        for delivery_log in self._delivery_logs:
            if delivery_log.path is None:
                continue
            try:
                delivery_log.reopen()
                reopened.append(str(delivery_log.path))
            except OSError as exc:  # e.g. a symlink planted at the path: keep the old file
                log.error("SIGHUP: cannot reopen %s: %s", delivery_log.path, exc.strerror)
        for handler in _file_handlers():
            handler.acquire()
            try:
                if handler.stream is not None:
                    handler.stream.close()
                handler.stream = handler._open()
                reopened.append(handler.baseFilename)
            except OSError as exc:
                log.error("SIGHUP: cannot reopen %s: %s", handler.baseFilename, exc.strerror)
            finally:
                handler.release()
        for callback in self._also:
            callback()
        log.info("SIGHUP: reopened %s", ", ".join(reopened) or "no log file")
        return reopened


def _file_handlers() -> list[logging.FileHandler]:
    loggers = [logging.getLogger()] + [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    seen: list[logging.FileHandler] = []
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, logging.FileHandler) and handler not in seen:
                seen.append(handler)
    return seen
