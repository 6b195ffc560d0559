"""The parser of what comes back (vmta.feedback.parser) on real-world samples (Sisimai's
set-of-emails, BSD-2, see bounce_samples/README.md), and the VERP token rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmta.domain.config.incoming_domain import BOUNCE, IncomingDomain, Mailbox, MailboxDirectory
from vmta.domain.reports.bounce_classification import classify
from vmta.domain.reports.verp import (
    VerpTarget,
    can_encode,
    decode_token,
    encode_token,
    greenarrow_form,
    verp_address,
)
from vmta.feedback.directory import resolve
from vmta.feedback.parser import parse_message

SAMPLES = Path(__file__).parent / "bounce_samples"

# sample -> (kind, source, [(final recipient, status)])
EXPECTED: dict[str, tuple[str, str, list[tuple[str, str]]]] = {
    "lhost-postfix-01": ("bounce", "dsn", [("r@p351355.pool.example.ne.jp", "5.1.1")]),
    "lhost-postfix-02": (
        "bounce",
        "dsn",
        [("filtered@example.co.jp", "5.2.1"), ("userunknown@example.co.jp", "5.1.1")],
    ),
    "lhost-sendmail-01": ("bounce", "dsn", [("userunknown@bouncehammer.jp", "5.1.1")]),
    "rfc3464-01": ("bounce", "dsn", [("userunknown@bouncehammer.jp", "5.1.1")]),
    "lhost-exchange2007-01": ("bounce", "dsn", [("mikeneko@example.co.jp", "5.1.1")]),
    "lhost-exchange2007-02": ("bounce", "dsn", [("kijitora@example.edu", "5.2.2")]),
    "lhost-exim-01": ("bounce", "flufl", [("kijitora@example.ed.jp", "5.7.0")]),
    "lhost-exim-02": (
        "bounce",
        "flufl",
        [("kijitora@example.jp", "5.1.1"), ("sabatora@example.jp", "5.2.1")],
    ),
    "lhost-gmail-01": ("bounce", "flufl", [("userunknown@example.jp", "5.1.1")]),
    "lhost-gmail-03": ("bounce", "flufl", [("kijitora@example.co.jp", "5.7.0")]),
    "lhost-qmail-01": ("bounce", "flufl", [("kijitora@example.ne.jp", "5.5.0")]),
    "lhost-qmail-02": (
        "bounce",
        "flufl",
        [("filtered@example.jp", "5.2.1"), ("userunknown@example.jp", "5.1.1")],
    ),
    "lhost-yahoo-01": ("bounce", "text", [("kijitora@example.org", "5.1.1")]),
    "lhost-office365-01": ("bounce", "text", [("kijitora@example.com", "5.1.10")]),
    "rfc3834-01": ("auto_reply", "auto_submitted", []),
    "rfc3834-02": ("auto_reply", "vacation", []),
    "arf-01": ("complaint", "arf", []),
    "arf-02": ("complaint", "arf", []),
}

# (bounce_type, bounce_code) the one classification table gives each status found.
CLASSES = {
    "5.1.1": ("h", 10),
    "5.1.10": ("s", 40),  # Microsoft's "recipient not found": not among h's X.1.0/1/3/6
    "5.2.2": ("s", 22),
    "5.2.1": ("s", 40),
    "5.5.0": ("s", 25),
    "5.7.0": ("o", 50),
}


def test_every_sample_has_an_expectation() -> None:
    assert sorted(p.stem for p in SAMPLES.glob("*.eml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_world_samples(name: str) -> None:
    kind, source, failures = EXPECTED[name]
    parsed = parse_message((SAMPLES / f"{name}.eml").read_bytes())
    assert (parsed.kind, parsed.source) == (kind, source)
    assert [(f.final_recipient, f.status) for f in parsed.failures] == failures
    for failure in parsed.failures:
        found = classify(failure.status)
        assert (found.bounce_type, found.bounce_code) == CLASSES[str(failure.status)]


def test_arf_fields() -> None:
    parsed = parse_message((SAMPLES / "arf-02.eml").read_bytes())
    assert parsed.feedback_type == "abuse"
    assert parsed.original_rcpt_to == "this-local-part-does-not-exist-on-yahoo@yahoo.com"


def test_delayed_dsn_is_a_notice() -> None:
    raw = (SAMPLES / "rfc3464-01.eml").read_bytes().replace(b"Action: failed", b"Action: delayed")
    parsed = parse_message(raw)
    assert parsed.kind == "notice" and parsed.failures == ()


SECRET = b"k" * 32
TARGET = VerpTarget("0190A1B2C3D4E5F60718", 4242)


def test_token_round_trip_and_forgery() -> None:
    token = encode_token(SECRET, TARGET)
    assert len(token) == 36 and token == token.lower()
    assert decode_token(SECRET, token) == TARGET
    assert decode_token(SECRET, token.upper()) == TARGET  # receivers may change case
    assert decode_token(b"x" * 32, token) is None  # another installation's
    for i in range(len(token)):
        flipped = token[:i] + ("a" if token[i] != "a" else "b") + token[i + 1 :]
        assert decode_token(SECRET, flipped) is None, i
    address = verp_address(SECRET, "return@bounces.test", TARGET)
    assert address == f"return-{token}@bounces.test" and len(address.split("@")[0]) <= 64
    assert not can_encode("not-a-queue-id", 1) and not can_encode(TARGET.queue_id, 2**32)


def test_greenarrow_form() -> None:
    form = greenarrow_form("return-list7-send9-first-last=dest.test", "return")
    assert form is not None
    assert (form.listid, form.sendid, form.recipient) == ("list7", "send9", "first-last@dest.test")
    assert greenarrow_form("return-list7-send9", "return") is None
    assert greenarrow_form("other-a-b-c=d.test", "return") is None


def test_resolve_addresses() -> None:
    directory = MailboxDirectory.of(
        [IncomingDomain(1, "Bounces.test", "normal")], [Mailbox(5, 1, BOUNCE, "return")]
    )
    token = encode_token(SECRET, TARGET)
    found = resolve(directory, SECRET, f"RETURN-{token.upper()}@bounces.TEST")
    assert found is not None and found.target == TARGET
    assert found.mailbox_address == "return@Bounces.test"
    forged = resolve(directory, b"y" * 32, f"return-{token}@bounces.test")
    assert forged is not None and forged.mailbox is None and forged.forged
    assert resolve(directory, SECRET, "x@elsewhere.test") is None
    unknown = resolve(directory, SECRET, "x@bounces.test")
    assert unknown is not None and unknown.mailbox is None
    assert directory.bounce_mailbox("Return@BOUNCES.test") == "return@Bounces.test"
