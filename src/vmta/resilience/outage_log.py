"""Logging a dependency's outage (the database, most of all) without drowning the log: the
first failure of an outage is logged with its traceback, every later one on one line
(what was refused and why), and the end of the outage once. 494 tracebacks in 30 s
helped nobody; one, followed by a line per refused message, does."""

from __future__ import annotations

import logging
import threading


class OutageLog:
    def __init__(self, logger: logging.Logger, what: str) -> None:
        self._log = logger
        self.what = what  # "the database", named in the recovery line
        self._lock = threading.Lock()  # failures are reported from several threads
        self.failing = False
        self.failures = 0  # in the current outage

    def failed(self, message: str, exc: BaseException, *args: object) -> None:
        """Log a failure: with its traceback if it opens an outage, else on one line."""
        with self._lock:
            first = not self.failing
            self.failing = True
            self.failures += 1
        if first:
            self._log.error(message, *args, exc_info=exc)
        else:
            self._log.error(message + " (%s: %s)", *args, type(exc).__name__, _line(exc))

    def worked(self) -> None:
        """The dependency answered: the outage, if there was one, is over."""
        if not self.failing:
            return
        with self._lock:
            failures, self.failing, self.failures = self.failures, False, 0
        self._log.warning("%s works again after %d failure(s)", self.what, failures)


def _line(exc: BaseException) -> str:
    text = str(exc).split("\n", 1)[0]
    return text[:300]
