"""vmta's log set-up (runtime/logs.py): one line per record, in the same form, although
records no longer collect their caller, thread and process (no line shows them)."""

from __future__ import annotations

import io
import logging
import re
import sys
from collections.abc import Iterator

import pytest

from vmta.runtime import logs


@pytest.fixture
def restored() -> Iterator[None]:
    root = logging.getLogger()
    saved = (
        root.handlers[:],
        root.level,
        logging._srcfile,
        logging.logThreads,
        logging.logProcesses,
        logging.logMultiprocessing,
    )
    try:
        yield
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logging._srcfile = saved[2]
        logging.logThreads, logging.logProcesses, logging.logMultiprocessing = saved[3:]


def test_lines_keep_their_form(restored: None, monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    logs.configure("INFO", tag="worker 2")
    logging.getLogger("vmta.messages").info("accepted %s: size=%d", "Q1", 10)
    logging.getLogger("vmta.messages").debug("not at INFO")
    (line,) = stream.getvalue().splitlines()
    pattern = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO \[worker 2\] vmta.messages: "
    assert re.fullmatch(pattern + r"accepted Q1: size=10", line), line
