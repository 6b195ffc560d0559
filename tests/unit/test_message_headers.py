"""Selector headers are found and removed; nothing else of the message changes."""

from __future__ import annotations

from vmta.domain.message.message_headers import split_headers, take_selector, with_trace_header

MESSAGE = (
    b"From: a@x.test\r\n"
    b"X-GreenArrow-MtaID: relay-1\r\n"
    b"Subject: folded\r\n subject\r\n"
    b"x-virtual-mta:\r\n  pmta-1\r\n"
    b"\r\n"
    b"X-GreenArrow-MtaID: in the body, untouched\r\n"
)


def test_greenarrow_header_selects_and_both_are_removed() -> None:
    selection = take_selector(MESSAGE, honour_powermta=False)
    assert selection.selector == "relay-1"
    assert selection.data == (
        b"From: a@x.test\r\nSubject: folded\r\n subject\r\n\r\n"
        b"X-GreenArrow-MtaID: in the body, untouched\r\n"
    )


def test_x_virtual_mta_wins_when_honoured() -> None:
    assert take_selector(MESSAGE, honour_powermta=True).selector == "pmta-1"


def test_message_without_selector_is_returned_as_is() -> None:
    data = b"Subject: x\r\n\r\nbody\r\n"
    selection = take_selector(data, honour_powermta=True)
    assert selection.selector is None and selection.data is data


def test_bare_lf_and_headers_only_messages() -> None:
    split = split_headers(b"A: 1\nB: 2\n")
    assert split.headers == [b"A: 1\n", b"B: 2\n"] and split.rest == b""
    assert take_selector(b"X-GreenArrow-MtaID: 7\n", honour_powermta=False).data == b""


def test_trace_header_goes_on_top() -> None:
    assert with_trace_header(b"A: 1\r\n\r\n", "Received: x") == b"Received: x\r\nA: 1\r\n\r\n"


EVERY_GREENARROW_HEADER = (
    b"From: a@x.test\r\n"
    b"X-GreenArrow-MtaID: relay-1\r\n"
    b"X-GreenArrow-MailClass: newsletter\r\n"
    b"X-GreenArrow-SendID: send-42\r\n"
    b"x-greenarrow-listid: list-7\r\n"
    b"X-GREENARROW-INSTANCEID: inst-3\r\n"
    b"X-GreenArrow-Click-Tracking-ID:\r\n track-99\r\n"
    b"X-GreenArrow-DKIM: sign-it\r\n"
    b"X-GreenArrow-SendID: a second one\r\n"
    b"X-Other: stays\r\n"
    b"\r\n"
    b"X-GreenArrow-SendID: in the body, untouched\r\n"
)


def test_every_greenarrow_header_is_removed_and_campaign_values_kept() -> None:
    selection = take_selector(EVERY_GREENARROW_HEADER, honour_powermta=False)
    assert selection.selector == "relay-1"
    assert selection.data == (
        b"From: a@x.test\r\nX-Other: stays\r\n\r\nX-GreenArrow-SendID: in the body, untouched\r\n"
    )
    assert selection.kept == {
        "X-GreenArrow-MailClass": "newsletter",
        "X-GreenArrow-SendID": "send-42",
        "X-GreenArrow-ListID": "list-7",
        "X-GreenArrow-InstanceID": "inst-3",
        "X-GreenArrow-Click-Tracking-ID": "track-99",
    }
