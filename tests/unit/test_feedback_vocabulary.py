"""The vendors' vocabularies as vmta writes them: the RFC 3463 bounce classification
table, MailerQ's result entries, the bad-address rule and the form-encoded event body
(pure logic; the real peers' view is in tests/delivery/test_events_*.py)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs

import pytest

from vmta.delivery.events.event_http import HttpEventDestination, form_body
from vmta.domain.message.mq_message import read_options
from vmta.domain.paths.delivery_controls import parse_expire
from vmta.domain.reports.bad_address import BadAddressPolicy, address_key, list_key
from vmta.domain.reports.bounce_classification import (
    BounceClass,
    classify,
    parse_status,
    table_rows,
)
from vmta.domain.reports.mailerq_result import RESULTS, STATES, attempt_result, result_entry


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("5.1.1", ("h", 10)),
        ("5.1.0", ("h", 10)),
        ("5.1.3", ("h", 10)),
        ("5.1.6", ("h", 10)),
        ("4.1.1", ("h", 10)),  # the class does not matter: the address is bad either way
        ("5.1.2", ("s", 21)),
        ("5.4.4", ("s", 21)),
        ("5.1.7", ("s", 40)),  # the sender's address, not the recipient's
        ("5.2.2", ("s", 22)),
        ("5.2.3", ("s", 23)),
        ("5.3.4", ("s", 23)),
        ("4.4.7", ("s", 20)),
        ("4.4.1", ("s", 24)),
        ("5.5.2", ("s", 25)),
        ("5.6.1", ("s", 26)),
        ("5.7.1", ("o", 50)),
        ("5.7.26", ("o", 50)),
        ("5.7.8", ("o", 51)),
        ("2.0.0", ("s", 40)),
        (None, ("s", 40)),
        ("5.1", ("s", 40)),
        ("x.1.1", ("s", 40)),
    ],
)
def test_classification_table(status: str | None, expected: tuple[str, int]) -> None:
    assert classify(status) == BounceClass(*expected)


def test_expiry_wins_over_the_last_reply() -> None:
    assert classify("5.1.1", expired=True) == BounceClass("s", 20)


def test_the_table_rows_cover_every_type_and_the_documentation_lists_them() -> None:
    rows = table_rows()
    assert {bounce_type for _, bounce_type, _ in rows} == {"h", "s", "o"}
    text = (Path(__file__).parents[2] / "docs" / "events.md").read_text(encoding="utf-8")
    for pattern, bounce_type, code in rows:
        assert f"| `{pattern}` | `{bounce_type}` | {code} |" in text, pattern


def test_parse_status() -> None:
    assert parse_status(" 5.1.10 ") == (5, 1, 10)
    assert parse_status("6.1.1") is None


def entry(**changes: object) -> dict[str, object]:
    values: dict[str, object] = {
        "at": 1_700_000_000.0,
        "delivered": False,
        "stage": "rcptto",
        "ended": None,
        "reply": "550 5.1.1 No such user",
        "source_ip": "192.0.2.1",
        "remote_ip": "198.51.100.2",
        "remote_host": "mx.dest.test",
        "messages": 2,
        "dsn": True,
    }
    values.update(changes)
    return result_entry(**values)  # type: ignore[arg-type]


def test_a_result_entry_has_every_field_of_mailerq() -> None:
    assert entry() == {
        "time": "2023-11-14 22:13:20",
        "from": "192.0.2.1",
        "to": "198.51.100.2",
        "mta": "mx.dest.test",
        "messages": 2,
        "code": 550,
        "status": "5.1.1",
        "description": "No such user",
        "dsn": True,
        "state": "rcptto",
        "result": "error",
    }


def test_accepted_only_after_the_final_dot() -> None:
    assert entry(delivered=True, stage="message", reply="250 ok")["result"] == "accepted"
    assert attempt_result("data", delivered=True, ended=None) == "error"
    assert entry(stage="message", ended="timeout")["result"] == "timeout"
    assert entry(stage="mailfrom", ended="lost")["result"] == "lost"
    assert entry(stage="process", ended="accepted")["result"] == "error"


def test_no_session_no_remote_and_records_without_a_stage() -> None:
    dns = entry(stage="dns", remote_ip=None, remote_host=None, messages=None, dsn=None)
    assert (dns["to"], dns["mta"], dns["messages"], dns["dsn"]) == ("", "", 0, False)
    assert dns["state"] == "dns"
    # Attempt records written before vmta kept the stage.
    assert entry(stage=None)["state"] == "rcptto"
    assert entry(stage=None, remote_ip=None)["state"] == "connect"
    assert entry(stage=None, delivered=True)["state"] == "message"
    assert entry(stage="nonsense")["state"] in STATES
    assert set(RESULTS) == {"accepted", "error", "timeout", "lost", "invalid"}


def test_bad_address_rule() -> None:
    policy = BadAddressPolicy(hard=1, soft=3, days=7)
    assert policy.crossed(1, 0) and policy.crossed(0, 3)
    assert not policy.crossed(0, 2)
    assert not policy.counts("o") and policy.counts("h") and policy.counts("s")
    assert policy.window_start(8 * 86_400.0) == 86_400.0
    off = BadAddressPolicy(hard=0, soft=0)
    assert not off.crossed(5, 5)
    assert policy.reason(1, 0) == "bad address: 1 hard bounce(s)"
    assert policy.reason(0, 3) == "bad address: 3 soft bounces within 7 days"
    assert (address_key(" Bob@Dest.TEST "), list_key(" List-7 "), list_key(None)) == (
        "bob@dest.test",
        "list-7",
        "",
    )


def test_form_body_encodes_nested_values_as_json_and_null_as_empty() -> None:
    body = form_body(
        {"id": 5, "listid": None, "synchronous": True, "email": "a+b@c.test", "x": {"k": [1]}}
    )
    assert parse_qs(body.decode(), keep_blank_values=True) == {
        "id": ["5"],
        "listid": [""],
        "synchronous": ["true"],
        "email": ["a+b@c.test"],
        "x": ['{"k":[1]}'],
    }


def test_a_type_without_a_url_is_not_subscribed() -> None:
    only = HttpEventDestination(None, type_urls={"bounce_all": "http://127.0.0.1:9/b"})
    assert only.event_types == frozenset({"bounce_all"})
    both = HttpEventDestination("http://127.0.0.1:9/all", type_urls={"scomp": "http://h/s"})
    assert both.event_types == frozenset(
        {"delivery_attempt", "bounce_all", "bounce_bad_address", "scomp"}
    )
    assert both.urls["scomp"] == "http://h/s" and both.urls["bounce_all"].endswith("/all")
    with pytest.raises(ValueError, match="needs a URL"):
        HttpEventDestination(None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-07 10:00:00", 1796637600.0),  # MailerQ's own form, UTC
        ("2026-12-07T10:00:00", 1796637600.0),
        ("2026-12-07T11:00:00.0000000+01:00", 1796637600.0),  # the .NET SDK's
        ("2026-12-07T10:00:00Z", 1796637600.0),
        ("2026-12-07T05:00:00-05:00", 1796637600.0),
        ("2026-12-07T10:00:00.5", None),  # ISO without an offset: whose clock?
        ("tomorrow", None),
    ],
)
def test_mailerq_times_also_as_iso_8601_with_an_offset(text: str, expected: float | None) -> None:
    assert parse_expire(text) == expected
    if expected is not None:
        options = read_options({"nextattempt": text, "maxdelivertime": text}, 0.0)
        assert options["nextattempt"] == options["maxdelivertime"] == expected
