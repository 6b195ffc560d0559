"""X-GreenArrow-DKIM and MailerQ's dkim property read into values (pure rules), and the
signer's canonicalization on the examples of RFC 6376 §3.4.5."""

from __future__ import annotations

import json

import pytest

from vmta.domain.message.dkim_request import (
    Directive,
    DkimRequestRefused,
    header_values,
    parse_directives,
    parse_mq_dkim,
    without_keys,
)
from vmta.signing.signer import canonical_body, canonical_header

PEM = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"


def test_objects_arrays_and_several_headers_add_up() -> None:
    found = parse_directives(
        [
            '{"domain": "a.test", "selector": "s1"}',
            '[{"from_domain": true}, {"domain": "b.test", "selector": "x",'
            ' "use_key_from": "a.test/s1", "allow_duplicate": true}]',
        ]
    )
    assert found == [
        Directive("a.test", "s1"),
        Directive(None, None, from_domain=True),
        Directive("b.test", "x", key_domain="a.test", key_selector="s1", allow_duplicate=True),
    ]


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        (["{"], "X-GreenArrow-DKIM is not valid JSON"),
        (["[]"], "array of 1 to 10"),
        (["5"], "X-GreenArrow-DKIM must be a JSON object"),
        (['{"selector": "s"}'], "X-GreenArrow-DKIM.domain is missing"),
        (['{"domain": "a.test", "colour": 1}'], "unknown fields: colour"),
        (['{"domain": "-a.test"}'], "domain is not a domain name"),
        (['{"domain": "a.test", "use_key_from": "b.test"}'], "selector is missing"),
        (['{"domain": "a.test", "selector": "s", "use_key_from": "a/b/c"}'], "use_key_from"),
        (['{"domain": "a.test", "from_domain": "yes"}'], "from_domain must be true or false"),
        (['[{"domain": "a.test"}, {"domain": "b.test"}]'] * 6, "more than 10 signatures"),
        (['{"domain": "a.test", "x": "' + "y" * 4100 + '"}'], "shorter than 4 KB"),
    ],
)
def test_what_cannot_be_honoured(values: list[str], reason: str) -> None:
    with pytest.raises(DkimRequestRefused) as refused:
        parse_directives(values)
    assert any(reason in m for m in refused.value.messages), refused.value.messages


def test_header_values_are_unfolded_and_found_in_any_case() -> None:
    data = (
        b'From: a@a.test\r\nx-greenarrow-dkim: [{"domain":"a.test",\r\n'
        b' "selector":"s"}]\r\nX-GreenArrow-DKIM: {"domain":"b.test"}\r\n\r\n'
        b"X-GreenArrow-DKIM: in the body\r\n"
    )
    assert [json.loads(v) for v in header_values(data)] == [
        [{"domain": "a.test", "selector": "s"}],
        {"domain": "b.test"},
    ]
    assert header_values(b"From: a@a.test\r\n\r\nbody\r\n") == []


def test_header_values_read_the_header_section_to_its_last_field() -> None:
    # The search stops at the first empty line: a field just before it, in a message with
    # bare LFs or with no body at all, is still found; one in the body never is.
    last = b'From: a@a.test\r\nX-GreenArrow-DKIM: {"domain":"c.test"}\r\n\r\nbody\r\n'
    assert header_values(last) == ['{"domain":"c.test"}']
    bare = b'From: a@a.test\nX-GreenArrow-DKIM: {"domain":"d.test"}\n\nbody\n'
    assert header_values(bare) == ['{"domain":"d.test"}']
    assert header_values(b'X-GreenArrow-DKIM: {"domain":"e.test"}\r\n') == ['{"domain":"e.test"}']
    body_only = b"From: a@a.test\r\n\r\n" + b"x" * 100_000 + b"\r\nX-GreenArrow-DKIM: {}\r\n"
    assert header_values(body_only) == []
    assert header_values(b"\r\nX-GreenArrow-DKIM: {}\r\n") == []  # no header section


def test_mailerq_dkim_defaults_and_problems_without_the_key() -> None:
    (one,) = parse_mq_dkim({"domain": "a.test", "selector": "s", "key": PEM})
    assert (one.header_canon, one.body_canon) == ("relaxed", "simple")  # MailerQ's default
    assert PEM not in repr(one)
    two = parse_mq_dkim(
        [{"domain": "a.test", "selector": "s", "key": PEM, "canonicalization": "simple/relaxed",
          "headers": ["X-Campaign"], "expire": "2030-01-01 00:00:00", "report": True,
          "oversign": True, "protocols": ["dkim"]}]
    )  # fmt: skip
    assert two[0].expire == 1893456000 and two[0].headers == ("x-campaign",)
    assert two[0].report and two[0].oversign
    with pytest.raises(DkimRequestRefused) as refused:
        parse_mq_dkim(
            [{"domain": "a..test", "selector": "s", "key": PEM + "x" * 10,
              "canonicalization": "loose", "protocols": ["arc"], "expire": "soon", "zz": 1}]
        )  # fmt: skip
    text = "; ".join(refused.value.messages)
    for reason in ("domain", "canonicalization", "protocols", "expire", "unknown fields: zz"):
        assert reason in text
    assert "AAAA" not in text
    assert without_keys([{"domain": "a.test", "key": PEM}]) == [{"domain": "a.test"}]


def test_canonicalization_examples_of_rfc_6376() -> None:
    # RFC 6376 §3.4.5: the example message and its canonical forms.
    fields = [b"A: X\r\n", b"B : Y\t\r\n\tZ  \r\n"]
    body = b" C \r\nD \t E\r\n\r\n\r\n"
    assert b"".join(canonical_header(f, "relaxed") for f in fields) == b"a:X\r\nb:Y Z\r\n"
    assert canonical_body(body, "relaxed") == b" C\r\nD E\r\n"
    assert b"".join(canonical_header(f, "simple") for f in fields) == b"".join(fields)
    assert canonical_body(body, "simple") == b" C \r\nD \t E\r\n"
    assert canonical_body(b"", "simple") == b"\r\n" and canonical_body(b"", "relaxed") == b""
