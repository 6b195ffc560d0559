"""INSERT ... ON CONFLICT DO UPDATE on SQLite and PostgreSQL: one statement, so two clients
writing the same key at once both succeed instead of one hitting the unique constraint."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Column, Connection, Table
from sqlalchemy.dialects import postgresql, sqlite


def upsert(conn: Connection, table: Table, values: Mapping[str, Any], key: Column[Any]) -> None:
    changes = {name: value for name, value in values.items() if name != key.name}
    if conn.dialect.name == "postgresql":
        pg = postgresql.insert(table).values(**values)
        conn.execute(pg.on_conflict_do_update(index_elements=[key], set_=changes))
    else:
        lite = sqlite.insert(table).values(**values)
        conn.execute(lite.on_conflict_do_update(index_elements=[key], set_=changes))
