"""Bounds every stored value keeps, whichever database holds it.

Ids and limits are at most ``MAX_INTEGER`` (2**31 - 1): PostgreSQL's ``integer`` holds no
more, and a bound that held on SQLite only would let a configuration work on one database
and fail on the other. Text refuses control characters: PostgreSQL cannot store NUL in
text at all, and no name, hostname, address or credential vmta stores has a use for the
others (C0, DEL and C1, Unicode category Cc).
"""

from __future__ import annotations

import unicodedata

MAX_INTEGER = 2_147_483_647


def is_stored_integer(value: int) -> bool:
    """True for an id or limit that every database can hold (0 to ``MAX_INTEGER``)."""
    return 0 <= value <= MAX_INTEGER


def has_control_character(text: str) -> bool:
    """True when ``text`` holds NUL or another control character."""
    return any(unicodedata.category(ch) == "Cc" for ch in text)


def control_character_problem(text: str) -> str | None:
    """The sentence (without its field path) refusing ``text``, or None when it is fine."""
    if has_control_character(text):
        return "must not contain NUL or other control characters"
    return None
