"""MailerQ message JSON, x-mq-* headers and a message's own retry rules (pure)."""

from __future__ import annotations

import pytest

from vmta.domain.attempts.message_retry_policy import first_attempt_wait, lifetime_end, next_attempt
from vmta.domain.attempts.retry_schedule import RetrySchedule
from vmta.domain.message.mq_message import (
    InvalidMqMessage,
    read_message,
    read_options,
    take_mq_headers,
)

NOW = 1_900_000_000.0
SCHEDULE = RetrySchedule(backoff=(60.0, 300.0), max_lifetime=3600.0)


def test_documented_minimal_message() -> None:
    message = read_message(
        {
            "envelope": "my-sender-address@my-domain.com",
            "recipient": "info@example.org",
            "mime": "From: my-sender-address@my-domain.com\r\nTo: info@example.org\r\n\r\nx",
        },
        NOW,
    )
    assert message.recipient == "info@example.org"
    assert message.envelope == "my-sender-address@my-domain.com"
    assert message.mime.startswith(b"From: ")
    assert message.options == {
        "document": {
            "envelope": "my-sender-address@my-domain.com",
            "recipient": "info@example.org",
        }
    }


def test_options_are_normalised_and_other_keys_kept() -> None:
    options = read_options(
        {
            "ips": ["2001:DB8::1", "10.0.0.1", "10.0.0.1"],
            "pool": "dedicated",
            "tags": "a, b",
            "maxattempts": "3",
            "maxdelivertime": "2030-03-18 00:00:00",
            "retries": "60,120",
            "nextattempt": {"time": 600},
            "queues": {"results": "mine"},
        },
        NOW,
    )
    assert options["ips"] == ["2001:db8::1", "10.0.0.1"]
    assert options["tags"] == ["a", "b"]
    assert options["maxattempts"] == 3
    assert options["maxdelivertime"] == 1_900_022_400.0
    assert options["retries"] == [60.0, 120.0]
    assert options["nextattempt"] == NOW + 600
    assert options["document"]["queues"] == {"results": "mine"}


def test_every_problem_is_named() -> None:
    with pytest.raises(InvalidMqMessage) as caught:
        read_message(
            {"recipient": "nobody", "ips": ["1.2.3"], "maxattempts": -1, "retries": [0]}, NOW
        )
    text = "; ".join(caught.value.messages)
    for clause in (
        "recipient must be an e-mail address",
        "mime is required",
        "ips must hold IPv4 or IPv6 addresses",
        "maxattempts must be an integer from 0 to 1000",
        "retries must be delays in seconds",
    ):
        assert clause in text
    with pytest.raises(InvalidMqMessage):
        read_message(["not", "an", "object"], NOW)


def test_x_mq_headers_are_removed_and_read() -> None:
    data = (
        b"From: a@b.test\r\nX-MQ-IP: 10.0.0.1\r\nx-mq-tag: one\r\nx-mq-tag: two\r\n"
        b"x-mq-meaningless: kept\r\nSubject: hi\r\n\r\nx-mq-ip: in the body stays\r\n"
    )
    taken = take_mq_headers(data)
    assert taken.data == b"From: a@b.test\r\nSubject: hi\r\n\r\nx-mq-ip: in the body stays\r\n"
    assert taken.keys == {"ips": "10.0.0.1", "tags": ["one", "two"], "meaningless": "kept"}
    assert take_mq_headers(b"From: a@b.test\r\n\r\nbody").keys == {}


def test_retries_then_the_last_delay_repeats() -> None:
    options = {"retries": [10.0, 20.0]}
    at = [
        next_attempt(
            options, attempts=n, received_at=NOW, expires_at=NOW + 3600, now=NOW, schedule=SCHEDULE
        ).next_attempt_at
        for n in (1, 2, 3)
    ]
    assert at == [NOW + 10, NOW + 20, NOW + 20]
    default = next_attempt(
        None, attempts=2, received_at=NOW, expires_at=NOW + 3600, now=NOW, schedule=SCHEDULE
    )
    assert default.next_attempt_at == NOW + 300


def test_maxattempts_and_maxdelivertime_give_up() -> None:
    done = next_attempt(
        {"maxattempts": 2},
        attempts=2,
        received_at=NOW,
        expires_at=NOW + 3600,
        now=NOW,
        schedule=SCHEDULE,
    )
    assert done.next_attempt_at is None and "maxattempts 2" in (done.reason or "")
    late = next_attempt(
        {"maxdelivertime": NOW + 30},
        attempts=1,
        received_at=NOW,
        expires_at=NOW + 30,
        now=NOW,
        schedule=SCHEDULE,
    )
    assert late.next_attempt_at is None and "maxdelivertime" in (late.reason or "")
    # A longer maxdelivertime replaces the default lifetime.
    long = next_attempt(
        {"maxdelivertime": NOW + 7200},
        attempts=1,
        received_at=NOW - 3590,
        expires_at=NOW + 7200,
        now=NOW,
        schedule=SCHEDULE,
    )
    assert long.next_attempt_at == NOW + 60
    expired = next_attempt(
        None,
        attempts=1,
        received_at=NOW - 3590,
        expires_at=NOW + 10,
        now=NOW,
        schedule=SCHEDULE,
    )
    assert expired.next_attempt_at is None


def test_first_attempt_wait_and_lifetime() -> None:
    assert first_attempt_wait({"nextattempt": NOW + 5}, 0, NOW) == 5
    assert first_attempt_wait({"nextattempt": NOW + 5}, 1, NOW) == 0
    assert first_attempt_wait(None, 0, NOW) == 0
    assert lifetime_end({"maxdelivertime": NOW + 1}, NOW + 99) == NOW + 1
    assert lifetime_end(None, NOW + 99) == NOW + 99
