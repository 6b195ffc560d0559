"""Bounds on what a JSON request document may be, checked before it is decoded.

Python's ``json`` module decodes nested arrays and objects recursively, so a body of a
few kilobytes of ``[`` raises RecursionError deep inside the decoder. vmta refuses a
document nested deeper than ``MAX_DEPTH`` levels before decoding it, by counting brackets
outside strings (RFC 8259 §9 lets a parser limit the depth of nesting). Bodies larger than
``MAX_BODY_BYTES`` never get this far: see ``body_limit``.
"""

from __future__ import annotations

import re
from typing import Any

from vmta.domain.errors import InvalidRequest

MAX_DEPTH = 32
MAX_BODY_BYTES = 1024 * 1024  # 1 MiB

# A JSON string (RFC 8259 §7) in the "unrolled loop" form, which the regex engine matches
# without backtracking however long the string is; and everything that is not a bracket.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")


def nesting_depth(data: bytes, *, stop_after: int = MAX_DEPTH) -> int:
    """How deep arrays and objects nest in ``data`` (0 for a scalar); counting stops a
    level past ``stop_after``. Malformed JSON gets some number; the decoder refuses it."""
    brackets = _NOT_BRACKET.sub(b"", _STRING.sub(b'""', data))
    depth = deepest = 0
    for byte in brackets:
        if byte in b"[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > stop_after:
                    break
        else:
            depth -= 1
    return deepest


def check_depth(data: bytes | str, what: str = "The request body") -> None:
    """Raise InvalidRequest when ``data`` nests deeper than ``MAX_DEPTH`` levels."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if nesting_depth(raw) > MAX_DEPTH:
        raise InvalidRequest(f"{what} is nested deeper than {MAX_DEPTH} levels.")


def loads(data: bytes | str, what: str = "The request body", **options: Any) -> Any:
    """``json.loads(data, **options)`` for a document within ``MAX_DEPTH``. Raises
    InvalidRequest when it is nested too deeply, and ValueError (or UnicodeDecodeError)
    as ``json.loads`` does when it is not JSON."""
    import json

    check_depth(data, what)
    try:
        return json.loads(data, **options)
    except RecursionError:  # not reachable within MAX_DEPTH; never a 500 all the same
        raise InvalidRequest(f"{what} is nested deeper than {MAX_DEPTH} levels.") from None
