"""Lookups shared by the control-plane tables whose rows have an ``id`` and a ``name``
that is unique ignoring case (a ``name_key`` column): VirtualMTAs, throttling templates
and throttle programs. A reference (``Ref``) names such a row by id or by name."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, Select, Table, func, select

from vmta.domain.config.bounds import is_stored_integer
from vmta.domain.config.names import name_key
from vmta.domain.config.virtual_mta import Ref


def referenced_row(conn: Connection, query: Select[Any], table: Table, ref: Ref) -> Row[Any] | None:
    """The row of ``query`` (which selects from ``table``) that ``ref`` names: by id when
    it has one (id wins over name), else by name. None when it names nothing."""
    c = table.c
    if ref.id is not None:
        if not is_stored_integer(ref.id):
            return None  # no stored id is that large (nor may the database be asked)
        query = query.where(c.id == ref.id)
    elif ref.name is not None:
        query = query.where(c.name_key == name_key(ref.name))
    else:
        return None
    return conn.execute(query).first()


def named_ref(conn: Connection, table: Table, ref: Ref) -> Ref | None:
    """``{id, name}`` of the row ``ref`` names, or None."""
    row = referenced_row(conn, select(table.c.id, table.c.name), table, ref)
    return None if row is None else Ref(id=row.id, name=row.name)


def name_page(
    conn: Connection,
    table: Table,
    *,
    after_id: int | None,
    offset: int,
    limit: int,
    name: str | None = None,
) -> list[Ref]:
    """One page of ``{id, name}`` in ascending id; ``after_id`` is the keyset cursor;
    ``name`` filters exactly, ignoring case."""
    c = table.c
    query: Select[Any] = select(c.id, c.name).order_by(c.id).limit(limit)
    if name is not None:
        query = query.where(c.name_key == name_key(name))
    if after_id is not None:
        query = query.where(c.id > after_id)
    elif offset:
        query = query.offset(offset)
    return [Ref(id=row.id, name=row.name) for row in conn.execute(query)]


def name_count(conn: Connection, table: Table, name: str | None = None) -> int:
    """How many rows ``name_page`` pages through with the same ``name``."""
    query = select(func.count()).select_from(table)
    if name is not None:
        query = query.where(table.c.name_key == name_key(name))
    return int(conn.execute(query).scalar_one())


def taken_name_problems(
    conn: Connection, table: Table, name: str, *, own_id: int | None, what: str
) -> list[str]:
    """A sentence when another row of ``table`` (a ``what``) has ``name``, ignoring case."""
    clash = conn.execute(select(table.c.id).where(table.c.name_key == name_key(name))).scalar()
    if clash is None or clash == own_id:
        return []
    return [
        f"name '{name}' is already used by another {what}"
        f" (id {clash}); names are unique ignoring case"
    ]
