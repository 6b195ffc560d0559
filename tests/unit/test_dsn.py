"""Bounce messages (RFC 3464 delivery status notifications in an RFC 6522 report), parsed
back with the standard library's email package."""

from __future__ import annotations

import email
import email.policy
from email.message import Message
from email.utils import parsedate_to_datetime

import pytest

from vmta.domain.reports.dsn import FailedRecipient, build_dsn, dsn_wanted, original_header_section

ARRIVAL = 1_700_000_000.0
NOW = ARRIVAL + 3600
ORIGINAL = (
    b"From: Sender <sender@origin.test>\r\n"
    b"To: many@dest.test\r\n"
    b"Subject: Quarterly report\r\n"
    b"Message-ID: <abc.123@origin.test>\r\n"
    b"\r\n"
    b"Body text that must not come back.\r\n"
)


def bounce(*recipients: FailedRecipient, original: bytes = ORIGINAL, **kw: object) -> bytes:
    values: dict[str, object] = {
        "reporting_mta": "mta1.vmta.test",
        "envelope_sender": "sender@origin.test",
        "recipients": recipients,
        "original": original,
        "arrival": ARRIVAL,
        "now": NOW,
        "message_id": "<dsn.1@mta1.vmta.test>",
    }
    values.update(kw)
    return build_dsn(**values)  # type: ignore[arg-type]


def parse(raw: bytes) -> Message:
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def status_groups(report: Message) -> list[Message]:
    part = report.get_payload()[1]
    assert part.get_content_type() == "message/delivery-status"
    groups = part.get_payload()
    assert isinstance(groups, list)
    return groups


USER_UNKNOWN = FailedRecipient(
    address="gone@dest.test",
    reply="550 5.1.1 <gone@dest.test>: Recipient address rejected: User unknown",
    remote_mta="mx1.dest.test",
    last_attempt=NOW - 10,
)


def test_the_report_has_the_three_parts_of_rfc_6522() -> None:
    raw = bounce(USER_UNKNOWN)
    report = parse(raw)
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    parts = report.get_payload()
    assert [p.get_content_type() for p in parts] == [
        "text/plain",
        "message/delivery-status",
        "text/rfc822-headers",
    ]
    assert report.defects == []
    assert all(not p.defects for p in parts)


def test_headers_go_from_mailer_daemon_to_the_envelope_sender() -> None:
    report = parse(bounce(USER_UNKNOWN))
    assert report["From"] == "Mail Delivery System <MAILER-DAEMON@mta1.vmta.test>"
    assert report["To"] == "<sender@origin.test>"
    assert report["Auto-Submitted"] == "auto-replied"
    assert report["Message-ID"] == "<dsn.1@mta1.vmta.test>"
    assert report["In-Reply-To"] == "<abc.123@origin.test>"
    assert report["MIME-Version"] == "1.0"
    assert parsedate_to_datetime(report["Date"]).timestamp() == NOW


def test_delivery_status_fields_per_message_and_per_recipient() -> None:
    groups = status_groups(parse(bounce(USER_UNKNOWN, envelope_id="ENV42", queue_id="q-7")))
    per_message, recipient = groups
    assert per_message["Reporting-MTA"] == "dns; mta1.vmta.test"
    assert per_message["Original-Envelope-Id"] == "ENV42"
    assert parsedate_to_datetime(per_message["Arrival-Date"]).timestamp() == ARRIVAL
    assert recipient["Final-Recipient"] == "rfc822; gone@dest.test"
    assert recipient["Action"] == "failed"
    assert recipient["Status"] == "5.1.1"
    assert recipient["Remote-MTA"] == "dns; mx1.dest.test"
    assert recipient["Diagnostic-Code"].replace("\r\n", "") == (
        "smtp; 550 5.1.1 <gone@dest.test>: Recipient address rejected: User unknown"
    )
    assert parsedate_to_datetime(recipient["Last-Attempt-Date"]).timestamp() == NOW - 10


def test_several_recipients_of_one_message_share_one_report() -> None:
    expired = FailedRecipient(
        address="slow@other.test",
        reason="The message expired in the queue after 5 days.",
        status="4.4.7",
        last_attempt=NOW,
    )
    null_mx = FailedRecipient(
        address="x@null.test",
        reason="null.test publishes a null MX (RFC 7505): it accepts no mail.",
        status="5.1.10",
    )
    raw = bounce(USER_UNKNOWN, expired, null_mx)
    groups = status_groups(parse(raw))
    assert [g["Final-Recipient"] for g in groups[1:]] == [
        "rfc822; gone@dest.test",
        "rfc822; slow@other.test",
        "rfc822; x@null.test",
    ]
    assert [g["Status"] for g in groups[1:]] == ["5.1.1", "4.4.7", "5.1.10"]
    # Without a remote reply there is no Diagnostic-Code or Remote-MTA to claim.
    assert groups[2]["Diagnostic-Code"] is None
    assert groups[3]["Remote-MTA"] is None
    text = parse(raw).get_payload()[0].get_payload(decode=True).decode()
    assert "null.test publishes a null MX (RFC 7505)" in text
    assert "host mx1.dest.test said: 550 5.1.1" in text


@pytest.mark.parametrize(
    ("reply", "status", "expected"),
    [
        ("550 5.7.1 Rejected by policy", None, "5.7.1"),
        ("550-5.2.2 Mailbox full\n550 5.2.2 Try later", None, "5.2.2"),
        ("554 Transaction failed", None, "5.0.0"),
        ("451 Try again later", None, "4.0.0"),
        ("550 4.2.2 mismatched class", None, "5.0.0"),
        (None, None, "5.0.0"),
        ("550 5.1.1 No such user", "5.4.7", "5.4.7"),
        ("550 5.1.1 No such user", "bogus", "5.1.1"),
    ],
)
def test_status_comes_from_the_reply_else_5_0_0(
    reply: str | None, status: str | None, expected: str
) -> None:
    recipient = FailedRecipient(address="r@dest.test", reply=reply, status=status)
    assert recipient.effective_status() == expected
    assert status_groups(parse(bounce(recipient)))[1]["Status"] == expected


def test_only_the_original_headers_come_back() -> None:
    report = parse(bounce(USER_UNKNOWN))
    headers = report.get_payload()[2].get_payload()
    assert "Subject: Quarterly report" in headers
    assert "Message-ID: <abc.123@origin.test>" in headers
    assert "Body text" not in headers
    assert b"Body text" not in bounce(USER_UNKNOWN)


def test_lines_end_in_crlf_and_stay_under_the_line_limit() -> None:
    long_reply = "550 5.7.1 " + " ".join(f"word{n}" for n in range(400))
    lf_original = ORIGINAL.replace(b"\r\n", b"\n")
    raw = bounce(FailedRecipient(address="r@dest.test", reply=long_reply), original=lf_original)
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) < 998
    diagnostic = status_groups(parse(raw))[1]["Diagnostic-Code"]
    assert diagnostic.replace("\r\n", "").startswith("smtp; 550 5.7.1 word0 word1 word2")


def test_hostile_values_cannot_add_header_fields() -> None:
    sneaky = FailedRecipient(
        address="a@dest.test\r\nBcc: victim@else.test",
        reply="550 5.1.1 bad\r\nX-Injected: yes",
        remote_mta="mx.dest.test\r\nX-Also: yes",
    )
    raw = bounce(sneaky, envelope_sender="s@origin.test\r\nBcc: victim@else.test")
    report = parse(raw)
    assert report["Bcc"] is None
    group = status_groups(report)[1]
    assert group["X-Injected"] is None
    assert group["X-Also"] is None
    assert b"\r\nBcc:" not in raw


def test_a_utf8_recipient_is_written_as_utf8_xtext() -> None:
    raw = bounce(FailedRecipient(address="jörg+x@dest.test", reply="550 5.1.1 unknown"))
    group = status_groups(parse(raw))[1]
    assert group["Final-Recipient"] == "utf-8; j\\x{F6}rg\\x{2B}x@dest.test"


def test_the_same_input_gives_the_same_bytes() -> None:
    assert bounce(USER_UNKNOWN) == bounce(USER_UNKNOWN)


def test_a_report_needs_a_recipient() -> None:
    with pytest.raises(ValueError, match="at least one recipient"):
        bounce()


@pytest.mark.parametrize(
    ("sender", "wanted"), [("", False), ("<>", False), (" < > ", False), ("a@b.test", True)]
)
def test_no_report_goes_to_the_null_sender(sender: str, wanted: bool) -> None:
    assert dsn_wanted(sender) is wanted


def test_the_header_section_stops_at_the_blank_line_and_at_the_size_cap() -> None:
    assert original_header_section(b"A: 1\nB: 2\n\nbody\n") == b"A: 1\r\nB: 2\r\n"
    huge = b"".join(b"X-Filler-%d: %s\r\n" % (n, b"y" * 100) for n in range(2000)) + b"\r\nb"
    section = original_header_section(huge)
    assert 60_000 < len(section) <= 64 * 1024
    assert section.endswith(b"\r\n")
    assert section.startswith(b"X-Filler-0: ")
