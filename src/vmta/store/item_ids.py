"""Ids of items inside a record (a routing rule's domain overrides, the throttling rules
of a template or an IP address): one sequence for all of them, so that an item keeps an
id no other item has had, whichever record it is in."""

from __future__ import annotations

from sqlalchemy import Connection, insert

from vmta.store.tables import item_ids


def allocate_item_id(conn: Connection) -> int:
    """A fresh id for an item inside a record (domain override, throttle rule)."""
    result = conn.execute(insert(item_ids).values())
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])
