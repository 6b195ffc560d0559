"""The listener's cheap MAIL/RCPT path parser gives what aiosmtpd's own parser gives: on
hand-picked paths and on many random ones, compared with aiosmtpd itself."""

from __future__ import annotations

import random

import pytest
from aiosmtpd.smtp import SMTP

from vmta.smtp.auth_gate import AuthGate
from vmta.smtp.listener import InjectionSMTP
from vmta.smtp.mail_path import plain_path
from vmta.smtp.session_registry import SessionCaps, SessionRegistry

PATHS = [
    "<a@b.c>",
    "<rcpt@sink.test>",
    "<a@b.c> SIZE=100 BODY=8BITMIME",
    "<a@b.c>\tSIZE=100",
    "<a@b.c>   ",
    "<a@b.c>x",
    "<a@b.c> (comment) SIZE=1",
    "<a.b+c@x-y.test>",
    "<first.last!#$%&'*+/=?^_`{|}~-@example.com>",
    "<A@B.C>",
    "<a@-b>",
    "<>",
    "<> SIZE=5",
    '<"q u"@b.c>',
    "<@r:a@b.c>",
    "<a@[127.0.0.1]>",
    "< a@b.c >",
    "<a@b.c",
    "<a..b@c>",
    "<.a@c>",
    "<a.@c>",
    "<a@b..c>",
    "<a@b.c.>",
    "<postmaster>",
    "a@b.c",
    "a@b.c SIZE=1",
    "<ü@b.c>",
    "<a@bü.c>",
    "<a@b.c>>",
    "<<a@b.c>",
    "",
    "<" + "l" * 65 + "@b.c>",  # longer than RFC 5321 §4.5.3.1.1 allows
]
ALPHABET = 'ab.@<> \t-+()[]"\\:;,=!1ü'


def random_paths(count: int) -> list[str]:
    rng = random.Random(5321)  # fixed: the same cases on every run
    found = []
    for _ in range(count):
        body = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 12)))
        found.append(f"<{body}" if rng.random() < 0.7 else body)
        found.append(f"<{rng.choice('abc')}@{rng.choice(['b', 'b.c', 'b-c.d'])}>{body}")
    return found


def parsed(server: SMTP, arg: str) -> object:
    """What ``_getaddr`` returns, or the exception it raises (aiosmtpd's parser raises
    IndexError on a lone "<"; the listener must behave the same)."""
    try:
        return server._getaddr(arg)
    except Exception as exc:
        return type(exc)


@pytest.fixture
async def servers() -> tuple[SMTP, InjectionSMTP]:
    class Handler:
        pass

    registry = SessionRegistry(SessionCaps(), "vmta.test")
    gate = AuthGate(lambda name, secret: False)
    return SMTP(Handler()), InjectionSMTP(Handler(), registry=registry, auth_gate=gate)


@pytest.mark.parametrize("limit", [0, 64])
async def test_same_result_as_aiosmtpd(servers: tuple[SMTP, InjectionSMTP], limit: int) -> None:
    original, fast = servers
    original.local_part_limit = fast.local_part_limit = limit
    cases = PATHS + random_paths(3000)
    taken = 0
    for arg in cases:
        assert parsed(fast, arg) == parsed(original, arg), arg
        taken += plain_path(arg) is not None
    # The cheap path really is taken for the everyday form (and not for the rest).
    assert plain_path("<rcpt@sink.test> SIZE=1024") == ("rcpt@sink.test", "SIZE=1024")
    assert taken > 1000


def test_unusual_forms_are_left_to_aiosmtpd() -> None:
    for arg in ["<>", '<"q u"@b.c>', "<@r:a@b.c>", "<a@[127.0.0.1]>", "<a@b.c> (x)", "a@b.c"]:
        assert plain_path(arg) is None, arg
