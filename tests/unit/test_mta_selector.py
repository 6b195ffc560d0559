"""Which X-GreenArrow-MtaID values name an id, a name, or nothing."""

from __future__ import annotations

import pytest

from vmta.domain.message.message_headers import take_selector
from vmta.domain.paths.mta_selector import MAX_ID, SelectorTarget, selector_target


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", SelectorTarget(id=1)),
        (str(MAX_ID), SelectorTarget(id=MAX_ID)),
        (str(MAX_ID + 1), SelectorTarget()),
        ("9223372036854775808", SelectorTarget()),
        ("99999999999999999999", SelectorTarget()),
        ("0", SelectorTarget()),
        ("\u00b2", SelectorTarget()),  # superscript two: str.isdigit() says yes
        ("\uff11", SelectorTarget()),  # full-width one: int() reads it as 1
        ("relay-1", SelectorTarget(name="relay-1")),
        ("a\0b", SelectorTarget()),
        ("x" * 201, SelectorTarget()),
    ],
)
def test_selector_target(value: str, expected: SelectorTarget) -> None:
    assert selector_target(value) == expected


def test_a_selector_that_names_nothing_is_not_kept() -> None:
    selection = take_selector(b"X-GreenArrow-MtaID: a\0b\r\n\r\nbody\r\n", honour_powermta=False)
    assert selection.selector is None
    assert selection.data == b"\r\nbody\r\n"
