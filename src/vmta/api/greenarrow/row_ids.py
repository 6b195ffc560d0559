"""Ids of rows inside a record's arrays (template and IP address throttling rules,
routing rule domain overrides) across writes.

On create a row's ``id`` is read-only and ignored: every row gets a fresh one. On PUT a
row that carries the ``id`` of one of the record's rows is that row, updated in place, and
keeps its id; a row without an ``id`` (or with ``null``) is new; a row left out is
removed. An ``id`` that names no row of the record, or one given twice, is refused:
silently giving such a row a new id would break the client's own bookkeeping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from vmta.api.greenarrow.fields import JsonObject
from vmta.domain.errors import ValidationFailed

Record = TypeVar("Record")


def without_row_ids(doc: JsonObject, arrays: Iterable[str]) -> JsonObject:
    """``doc`` with the ``id`` of every row of ``arrays`` dropped (a create request)."""
    stripped = dict(doc)
    for key in arrays:
        rows = stripped.get(key)
        if isinstance(rows, list):
            stripped[key] = [
                {k: v for k, v in row.items() if k != "id"} if isinstance(row, dict) else row
                for row in rows
            ]
    return stripped


def row_id_problems(patch: JsonObject, current: JsonObject, arrays: Iterable[str]) -> list[str]:
    """What is wrong with the row ids of a PUT body, given the current record (as GET
    renders it). Rows without an id, or with a null one, are new and fine."""
    problems: list[str] = []
    for key in arrays:
        rows = patch.get(key)
        if not isinstance(rows, list):
            continue
        existing = {row.get("id") for row in current.get(key) or [] if isinstance(row, dict)}
        seen: dict[int, int] = {}
        for i, row in enumerate(rows):
            if not isinstance(row, dict) or row.get("id") is None:
                continue
            value: Any = row["id"]
            where = f"{key}[{i}].id"
            if isinstance(value, bool) or not isinstance(value, int):
                problems.append(f"{where} must be an integer or null")
            elif value not in existing:
                problems.append(
                    f"{where} {value} is not the id of a row of this record;"
                    " leave the id out to add a new row"
                )
            elif value in seen:
                problems.append(f"{where} {value} is already given to {key}[{seen[value]}]")
            else:
                seen[value] = i
    return problems


def parsed_with(parse: Callable[[], Record], id_problems: list[str]) -> Record:
    """``parse()``, with ``id_problems`` reported along with its own (all at once,
    field problems first)."""
    try:
        record = parse()
    except ValidationFailed as refused:
        if not id_problems:
            raise
        raise ValidationFailed([*refused.messages, *id_problems]) from None
    if id_problems:
        raise ValidationFailed(id_problems)
    return record
