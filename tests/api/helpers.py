"""Helpers for API tests: envelope checks and whole-store snapshots."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

import httpx
import pytest
from _pytest.mark.structures import ParameterSet
from sqlalchemy import select

from vmta.store.store import Store
from vmta.store.tables import metadata

GA = "/ga/api/v3/eng"


def ok(response: httpx.Response) -> dict[str, Any]:
    """The ``data`` of a successful GreenArrow envelope, after checking its exact shape."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"success", "data", "error_code", "error_messages"}
    assert body["success"] is True
    assert body["error_code"] is None and body["error_messages"] is None
    data: dict[str, Any] = body["data"]
    return data


def failed(response: httpx.Response, status: int, code: str) -> list[str]:
    """The ``error_messages`` of a GreenArrow error envelope with this status and code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"success", "data", "error_code", "error_messages"}
    assert body["success"] is False and body["data"] is None
    assert body["error_code"] == code
    messages: list[str] = body["error_messages"]
    assert messages and all(isinstance(m, str) and m for m in messages)
    return messages


def snapshot(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, to prove that a refused request changed nothing."""
    with store.read() as conn:
        return {
            table.name: sorted((tuple(row) for row in conn.execute(select(table))), key=repr)
            for table in metadata.sorted_tables
        }


def update_patch(label: str, change: dict[str, Any], field: str) -> dict[str, Any]:
    """The PUT body that breaks a rule: the change itself, except for a "missing" rule,
    where an explicit null removes the field (on PUT an absent field keeps its value)."""
    if not label.endswith("missing"):
        return dict(change)
    patch: dict[str, Any] = {}
    cursor = patch
    *parents, leaf = field.split(".")
    for key in parents:
        cursor = cursor.setdefault(key, {})
    cursor[leaf] = None
    return patch


def validation_table(
    rows: Sequence[Any],
    *,
    store_rows: Collection[str] = (),
    label: Callable[[Any], str] = lambda row: str(row[0]),
    unpack: bool = True,
) -> list[ParameterSet]:
    """Parameters for a table of broken rules, each row's id being its ``label``.

    Rows that break a rule of the request alone run on one database (``one_database``);
    the rows named in ``store_rows`` (an unknown reference, a taken name: rules that the
    store decides) run on SQLite and on PostgreSQL. ``unpack=False`` passes each row as
    one parameter."""
    labels = [label(row) for row in rows]
    missing = set(store_rows) - set(labels)
    assert not missing, f"store_rows names rows that are not in the table: {missing}"
    return [
        pytest.param(
            *(row if unpack else (row,)),
            id=name,
            marks=() if name in store_rows else (pytest.mark.one_database,),
        )
        for row, name in zip(rows, labels, strict=True)
    ]
