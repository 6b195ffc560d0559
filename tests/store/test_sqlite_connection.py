"""What every SQLite connection of a store is set to (store/database.py): durable commits
(WAL, synchronous=FULL) and a small page cache of its own."""

from __future__ import annotations

from pathlib import Path

from vmta.store.database import SQLITE_CACHE_KIB
from vmta.store.store import Store


def test_every_sqlite_connection_is_durable_and_keeps_a_small_page_cache(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'vmta.db'}")
    try:
        with store.read() as first, store.read() as second:  # two connections of the pool
            for conn in (first, second):
                assert conn.exec_driver_sql("PRAGMA cache_size").scalar() == -SQLITE_CACHE_KIB
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
                assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    finally:
        store.close()
