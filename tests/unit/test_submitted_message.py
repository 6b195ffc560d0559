"""HTTP Submission API documents become RFC 5322 messages: pure checks and building."""

from __future__ import annotations

import email
from email.message import Message
from typing import Any

import pytest

from vmta.domain.message.submitted_message import SubmissionRefused, build, parse_message

BASE: dict[str, Any] = {
    "subject": "s",
    "from_email": "from@example.com",
    "to": [{"email": "to@example.net"}],
}


def built(doc: dict[str, Any]) -> tuple[str, Message]:
    message_id, data = build(parse_message(doc), now=0.0, hostname="vmta.test")
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    return message_id, email.message_from_bytes(data)


def test_html_only_with_attachments_and_own_message_id() -> None:
    message_id, parsed = built(
        {
            **BASE,
            "html": "<p>hi</p>",
            "bcc": ["hidden@example.org"],
            "return_path": "bounces@example.com",
            "headers": {"Message-ID": "<own@example.com>", "X-Campaign": "c1"},
            "attachments": [
                {"file_name": "a.txt", "content_type": "text/plain", "content": "hello"},
                {"file_name": "b.bin", "content_type": "application/pdf", "content_base64": "AAEC"},
            ],
        }
    )
    assert message_id == "own@example.com" and parsed["Message-ID"] == "<own@example.com>"
    assert parsed["X-Campaign"] == "c1" and parsed["Date"] is not None
    assert "hidden@example.org" not in str(parsed)  # bcc is envelope only
    kinds = [p.get_content_type() for p in parsed.walk()]
    assert kinds == ["multipart/mixed", "text/html", "text/plain", "application/pdf"]
    pdf = list(parsed.walk())[-1]
    assert pdf.get_filename() == "b.bin" and pdf.get_payload(decode=True) == b"\x00\x01\x02"
    message = parse_message({**BASE, "html": "x", "bcc": ["h@example.org"]})
    assert message.recipients == ["to@example.net", "h@example.org"]


def test_generated_message_id_uses_the_domain_given() -> None:
    message_id, parsed = built({**BASE, "text": "t", "message_id_domain": "mail.example.com"})
    assert message_id.startswith("mid-") and message_id.endswith("@mail.example.com")
    assert parsed["Message-ID"] == f"<{message_id}>"


def test_mtaid_and_mailclass_become_the_greenarrow_headers() -> None:
    _, parsed = built({**BASE, "text": "t", "mtaid": 7, "mailclass": "news"})
    assert parsed["X-GreenArrow-MtaID"] == "7" and parsed["X-GreenArrow-MailClass"] == "news"


def test_mail_class_is_the_doppler_sdk_spelling_of_mailclass() -> None:
    _, parsed = built({**BASE, "text": "t", "mail_class": "transactional"})
    assert parsed["X-GreenArrow-MailClass"] == "transactional"
    both = parse_message({**BASE, "text": "t", "mailclass": "a", "mail_class": "a"})
    assert both.mailclass == "a"
    with pytest.raises(
        SubmissionRefused, match=r"message\.mailclass and message\.mail_class differ"
    ):
        parse_message({**BASE, "text": "t", "mailclass": "a", "mail_class": "b"})
    with pytest.raises(SubmissionRefused, match=r"message\.mail_class must be a string"):
        parse_message({**BASE, "text": "t", "mail_class": 5})


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"text": None}, "message needs html or text content (or both)"),
        ({"text": "t", "to": []}, "message needs at least one recipient in to, cc or bcc"),
        (
            {"text": "t", "subject": "a\r\nBcc: x@y.z"},
            "message.subject must not contain line breaks",
        ),
        (
            {"text": "t", "headers": {"Bad Name": "x"}},
            "message.headers has an invalid header name 'Bad Name'",
        ),
        (
            {"text": "t", "headers": {"X-A": "a\nb"}},
            "message.headers.X-A must be a one-line string",
        ),
        ({"text": "t", "mtaid": True}, "message.mtaid must be the name or id of a VirtualMTA"),
        ({"text": "t", "colour": 1}, "message.colour is not a known field"),
        (
            {"text": "t", "attachments": [{"file_name": "a", "content_type": "x/y"}]},
            "message.attachments[0] must give exactly one of content, content_base64",
        ),
    ],
)
def test_refusals_name_the_problem(change: dict[str, Any], error: str) -> None:
    with pytest.raises(SubmissionRefused) as refused:
        parse_message({**BASE, **change})
    assert str(refused.value) == error
