"""Lists and pagination (contract §2.2).

``?page=N`` (0-based) uses an offset; ``?page_token=T`` carries a keyset cursor (the last
id of the previous page), so the next page costs one index range scan at record 1,000,000
as at record 0. The token is opaque to clients: base64url of a small JSON object.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from vmta.api import json_bounds
from vmta.domain.config.bounds import MAX_INTEGER
from vmta.domain.errors import InvalidRequest

DEFAULT_PER_PAGE = 100
MAX_PER_PAGE = 1000
MAX_PAGE = 10**9
# Tokens this module writes stay far below this (filters are at most 200 characters each);
# a longer one was not written by vmta and is refused before it is decoded.
MAX_TOKEN_LENGTH = 2048


@dataclass(frozen=True)
class PageRequest:
    page: int
    per_page: int
    after_id: int | None  # keyset cursor from a page_token

    @property
    def offset(self) -> int:
        return self.page * self.per_page


def _non_negative_int(text: str, name: str, low: int, high: int) -> int:
    if not text.isascii() or not text.isdigit() or not low <= int(text) <= high:
        raise InvalidRequest(f"{name} must be an integer from {low} to {high}.")
    return int(text)


def page_request(
    query: Mapping[str, str], scope: str, *, max_after: int = MAX_INTEGER
) -> PageRequest:
    """Read ``page``, ``per_page`` and ``page_token``; ``page_token`` wins over ``page``.

    ``scope`` names the list (and its filters), so that a token from one list is refused
    by another instead of silently skipping records. ``max_after`` bounds the cursor: an
    id, unless the list packs more into it (``used_by``: the kind and the id).
    """
    per_page = DEFAULT_PER_PAGE
    if "per_page" in query:
        per_page = _non_negative_int(query["per_page"], "per_page", 1, MAX_PER_PAGE)
    token = query.get("page_token")
    if token is not None:
        page, token_per_page, after_id = decode_token(token, scope, max_after)
        return PageRequest(page=page, per_page=token_per_page, after_id=after_id)
    page = 0
    if "page" in query:
        page = _non_negative_int(query["page"], "page", 0, MAX_PAGE)
    return PageRequest(page=page, per_page=per_page, after_id=None)


def encode_token(page: int, per_page: int, after_id: int, scope: str) -> str:
    raw = json.dumps({"p": page, "n": per_page, "a": after_id, "s": scope}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(token: str, scope: str, max_after: int = MAX_INTEGER) -> tuple[int, int, int]:
    bad = InvalidRequest("page_token is not a valid page token for this list.")
    if len(token) > MAX_TOKEN_LENGTH:
        raise bad
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json_bounds.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError, InvalidRequest):
        raise bad from None
    if not isinstance(data, dict) or data.get("s") != scope:
        raise bad
    values = [data.get("p"), data.get("n"), data.get("a")]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise bad
    page, per_page, after_id = (int(v) for v in values)  # type: ignore[arg-type]
    # Bounded like every stored id (domain.bounds), so the cursor binds on any database.
    if not 1 <= per_page <= MAX_PER_PAGE or page > MAX_PAGE or after_id > max_after:
        raise bad
    return page, per_page, after_id


def paginated(
    plural: str,
    request: PageRequest,
    scope: str,
    fetch: Callable[[int | None, int, int], list[Any]],
    count: Callable[[], int],
    render: Callable[[Any], dict[str, Any]],
    id_of: Callable[[Any], int],
) -> dict[str, Any]:
    """The ``data`` of a list response: ``{plural: [...], "pagination": {...}}``.

    ``fetch(after_id, offset, limit)`` returns records in ascending id. One extra record
    is fetched to know whether a next page exists without a second query.
    """
    rows = fetch(request.after_id, request.offset, request.per_page + 1)
    has_more = len(rows) > request.per_page
    rows = rows[: request.per_page]
    total = count()
    num_pages = (total + request.per_page - 1) // request.per_page
    next_token = None
    if has_more and rows:
        next_token = encode_token(request.page + 1, request.per_page, id_of(rows[-1]), scope)
    return {
        plural: [render(row) for row in rows],
        "pagination": {
            "page": request.page,
            "per_page": request.per_page,
            "num_pages": num_pages,
            "num_records": total,
            "next_page_token": next_token,
        },
    }
