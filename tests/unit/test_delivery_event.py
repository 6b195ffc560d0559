"""Pure rules of delivery events: statuses, bounce classes, MailerQ result queues."""

from __future__ import annotations

from typing import Any

import pytest

from vmta.domain.attempts.spool_records import DELIVERED, FAILED, QUEUED, Outcome
from vmta.domain.reports.delivery_event import (
    MessageFacts,
    attempt_status,
    bounce_all_fields,
    bounce_classification,
    build_events,
    common_fields,
    mailerq_json,
    mailerq_queues,
    parse_reply,
    tracking_values,
)

CONFIGURED = {"results": "results", "success": "success", "failure": "failure", "retry": "retry"}
FACTS = MessageFacts(
    address="r@dest.test",
    attempts_before=0,
    mail_from="s@src.test",
    received_at=1_700_000_000.0,
    is_bounce=False,
)


def outcome(state: str, reply: str, attempted: bool = True) -> Outcome:
    return Outcome(1, "Q1", 1_700_000_100.0, state, reply=reply, attempted=attempted)


@pytest.mark.parametrize(
    ("state", "reply", "status"),
    [
        (DELIVERED, "250 2.0.0 ok", "success"),
        (QUEUED, "451 4.7.1 later", "deferral"),
        (FAILED, "550 5.1.1 No such user", "failure"),
        (FAILED, "550 5.4.7 Message expired in queue", "failure_toolong"),
        # A final failure on a temporary reply: the queue lifetime ran out.
        (FAILED, "451 4.4.1 no answer (giving up: message expired after 7 attempt(s))",
         "failure_toolong"),
    ],
)  # fmt: skip
def test_attempt_status(state: str, reply: str, status: str) -> None:
    assert attempt_status(outcome(state, reply)) == status


@pytest.mark.parametrize(
    ("reply", "classification"),
    [
        ("550 5.1.1 No such user", ("h", 10)),
        ("550 5.1.2 Bad destination system", ("s", 21)),
        ("552 5.2.2 Mailbox full", ("s", 22)),
        ("552 5.3.4 Message too big", ("s", 23)),
        ("554 5.7.1 Blocked by policy", ("o", 50)),
        ("550 5.1.0 Address rejected", ("h", 10)),
        ("553 5.1.3 Bad syntax", ("h", 10)),
        ("550 5.1.6 Moved", ("h", 10)),
        ("550 5.4.4 Unable to route", ("s", 21)),
        ("535 5.7.8 Authentication credentials invalid", ("o", 51)),
        ("550 Rejected", ("s", 40)),
        ("550 5.4.7 Message expired in queue", ("s", 20)),
    ],
)
def test_bounce_classification(reply: str, classification: tuple[str, int]) -> None:
    assert bounce_classification(outcome(FAILED, reply)) == classification


def test_parse_reply() -> None:
    assert parse_reply("550 5.1.1 No such user").__dict__ == {
        "code": 550,
        "enhanced": "5.1.1",
        "description": "No such user",
    }
    assert (parse_reply("451 connection lost").code, parse_reply("451 x").enhanced) == (451, None)
    assert parse_reply("nonsense").code is None


def test_tracking_values_ignore_header_case_and_default_to_null() -> None:
    values = tracking_values({"x-greenarrow-sendid": "s1", "X-GreenArrow-ListID": "l1"})
    assert values == {
        "mailclass": None,
        "sendid": "s1",
        "listid": "l1",
        "instanceid": None,
        "click_tracking_id": None,
    }


def test_sendid_and_listid_are_lower_cased_as_greenarrow_reports_them() -> None:
    values = tracking_values({"X-GreenArrow-SendID": "Spring-SALE", "X-GreenArrow-ListID": "L1"})
    assert (values["sendid"], values["listid"]) == ("spring-sale", "l1")
    kept = {"X-GreenArrow-MailClass": "Newsletter"}
    assert tracking_values(kept)["mailclass"] == "Newsletter"  # only the two ids


def test_integer_fields_are_left_out_when_unknown_never_null() -> None:
    attempt, bounce = build_events(outcome(FAILED, "550 5.1.1 gone"), FACTS)
    fields = attempt.payload["greenarrow"]
    assert "outmtaid" not in fields and "message_size" not in fields
    assert all(
        value is not None
        for key, value in fields.items()
        if key in ("event_time", "is_retry", "injected_time", "timestamp")
    )
    # No connection was made: the MX fields are null (strings may be).
    assert fields["mx_hostname"] is None and fields["mx_ip"] is None
    assert bounce.payload["greenarrow"]["synchronous"] is True
    assert "outmtaid" not in bounce.payload["greenarrow"]


def test_waiting_is_no_event_but_a_final_outcome_without_attempt_is() -> None:
    assert build_events(outcome(QUEUED, "paused", attempted=False), FACTS) == []
    assert [e.event_type for e in build_events(outcome(FAILED, "550 5.7.1 x", False), FACTS)] == [
        "delivery_attempt",
        "bounce_all",
    ]


def payload(kind: str, queues: Any = None) -> dict[str, Any]:
    document: dict[str, Any] = {"recipient": "r@dest.test"}
    if queues is not None:
        document["queues"] = queues
    return {"kind": kind, "mailerq": document}


def test_result_queues_by_kind() -> None:
    assert mailerq_queues(payload("success"), CONFIGURED) == ["results", "success"]
    assert mailerq_queues(payload("failure"), CONFIGURED) == ["results", "failure"]
    assert mailerq_queues(payload("retry"), CONFIGURED) == ["retry"]
    assert mailerq_queues(payload("success"), {**CONFIGURED, "results": ""}) == ["success"]


def test_the_message_queues_key_overrides_the_configured_names() -> None:
    own = {"success": "my-success", "results": ""}
    assert mailerq_queues(payload("success", own), CONFIGURED) == ["my-success"]
    assert mailerq_queues(payload("failure", own), CONFIGURED) == ["failure"]
    assert mailerq_queues(payload("retry", "not an object"), CONFIGURED) == ["retry"]


def test_mailerq_document_keeps_the_message_json_without_mime() -> None:
    facts = MessageFacts(
        address="r@dest.test",
        attempts_before=0,
        mail_from="s@src.test",
        received_at=1_700_000_000.0,
        is_bounce=False,
        mailerq_json={"envelope": "bounces@src.test", "mime": "...", "tags": ["a"], "x": 1},
    )
    (event,) = build_events(outcome(DELIVERED, "250 ok"), facts)
    document = event.payload["mailerq"]
    assert document["envelope"] == "bounces@src.test"
    assert document["tags"] == ["a"] and document["x"] == 1
    assert "mime" not in document
    assert [r["code"] for r in document["results"]] == [250]


def test_the_x_mq_queue_headers_override_too_and_the_queues_object_wins() -> None:
    # x-mq-success-queue and x-mq-retry-queue, as take_mq_headers keeps them.
    document = {"success-queue": "hdr-success", "retry-queue": "hdr-retry"}
    assert mailerq_queues({"kind": "success", "mailerq": document}, CONFIGURED) == [
        "results",
        "hdr-success",
    ]
    both = {**document, "queues": {"success": "json-success"}}
    assert mailerq_queues({"kind": "success", "mailerq": both}, CONFIGURED) == [
        "results",
        "json-success",
    ]
    assert mailerq_queues({"kind": "retry", "mailerq": both}, CONFIGURED) == ["hdr-retry"]


def test_a_queue_name_the_broker_would_refuse_is_not_taken() -> None:
    own = {"success": "amq.gen-mine", "results": "x" * 256}
    assert mailerq_queues(payload("success", own), CONFIGURED) == ["results", "success"]


def test_mailerq_json_is_the_kept_document() -> None:
    document = {"recipient": "r@dest.test", "custom": {"id": 7}}
    assert mailerq_json({"ips": ["192.0.2.1"], "document": document}) == document
    assert mailerq_json({"ips": ["192.0.2.1"]}) is None
    assert mailerq_json(None) is None


def test_results_the_json_already_held_come_first() -> None:
    earlier = {"time": "2026-01-01 00:00:00", "code": 451, "result": "error"}
    facts = MessageFacts(
        address="r@dest.test",
        attempts_before=1,
        mail_from="s@src.test",
        received_at=1_700_000_000.0,
        is_bounce=False,
        mailerq_json={"recipient": "r@dest.test", "results": [earlier]},
        earlier_results=[{"code": 452}],
    )
    (event,) = build_events(outcome(DELIVERED, "250 ok"), facts)
    assert [r["code"] for r in event.payload["mailerq"]["results"]] == [451, 452, 250]


def test_a_received_bounce_is_classified_by_the_same_table() -> None:
    common = common_fields(
        at=1_700_000_000.9,
        address="r@dest.test",
        message_id="Q1",
        kept_headers={"X-GreenArrow-ListID": "L1"},
    )
    fields = bounce_all_fields(
        common, status="5.1.1", text="smtp; 550 5.1.1 unknown user", synchronous=False
    )
    assert fields == {
        "event_type": "bounce_all",
        "event_time": 1_700_000_000,
        "email": "r@dest.test",
        "message_id": "Q1",
        "mailclass": None,
        "sendid": None,
        "listid": "l1",
        "instanceid": None,
        "click_tracking_id": None,
        "bounce_type": "h",
        "bounce_code": 10,
        "bounce_text": "smtp; 550 5.1.1 unknown user",
        "synchronous": False,
    }
