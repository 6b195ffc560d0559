"""The message log's rules (delivery/outcomes/activity_log.py): the Message-ID read from the
header section only, and the per-minute summary counting what the per-message lines
would have said."""

from __future__ import annotations

import logging

import pytest

from vmta.delivery.outcomes.activity_log import ActivityLog, message_id_of
from vmta.domain.attempts.spool_records import Job, Outcome


def test_message_id_of() -> None:
    assert message_id_of(b"From: a@b\r\nMessage-ID: <x@y>\r\n\r\nbody") == "<x@y>"
    assert message_id_of(b"message-id:\r\n <folded@y>\r\nTo: c\r\n\r\n") == "<folded@y>"
    assert message_id_of(b"From: a@b\r\n\r\nMessage-ID: <in-body@y>\r\n") is None
    assert message_id_of(b"Message-ID: <a\x1b[31m@y>\r\n\r\n") == "<a?[31m@y>"


def job(n: int) -> Job:
    return Job(n, f"Q{n}", f"r{n}@d.test", 0, "s@d.test", 0.0, 9.0, None, None, False)


def test_minute_mode_counts_instead_of_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="vmta.messages")
    activity = ActivityLog("minute")
    activity.accepted(
        "Q1", client="127.0.0.1", auth_name=None, size=10, data=b"x" * 10, recipients=2
    )
    activity.outcome(job(1), Outcome(1, "Q1", 1.0, "delivered"))
    activity.outcome(job(2), Outcome(2, "Q1", 1.0, "queued", outcome_label="deferred"))
    activity.outcome(job(3), Outcome(3, "Q1", 1.0, "queued", attempted=False))  # waiting
    assert caplog.records == []
    activity.summarize()
    activity.summarize()  # nothing new: no line
    assert [r.getMessage() for r in caplog.records] == [
        "last 60 s: accepted 1 message(s) (10 bytes); delivered 1, failed 0, deferred 1"
        " recipient(s)"
    ]


def test_each_mode_logs_final_outcomes_only(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="vmta.messages")
    activity = ActivityLog("each")
    failed = Outcome(1, "Q1", 1.0, "failed", reply="550 5.1.1 no", remote_host="mx")
    activity.outcome(job(1), failed)
    activity.outcome(job(2), Outcome(2, "Q1", 1.0, "queued", reply="451 later"))
    assert [r.getMessage() for r in caplog.records] == [
        "failed Q1: recipient=r1@d.test remote=mx reply=550 5.1.1 no"
    ]


def test_each_mode_names_the_size_as_it_came_and_the_stored_message_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="vmta.messages")
    stored = b"Received: from x\r\n\tby vmta.test; date\r\nMessage-ID: <m@x>\r\n\r\nbody\r\n"
    ActivityLog("each").accepted(
        "Q1", client=None, auth_name="a", size=31, data=stored, recipients=2
    )
    assert [r.getMessage() for r in caplog.records] == [
        "accepted Q1: client=- credential=a size=31 message_id=<m@x> recipients=2"
    ]
