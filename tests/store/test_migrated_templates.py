"""The ``store`` fixture's migrated databases (tests/migrated_templates.py) start every
test where a freshly migrated database would: at the head revision, with the seeded rows,
no rows of an earlier test, ids from the start, and a schema a test changed rebuilt."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, text

from tests.conftest import PG_URL
from tests.migrated_templates import MigratedTemplates
from vmta.domain.config.virtual_mta import Limits, RelayServer
from vmta.store import database
from vmta.store.store import Store
from vmta.store.virtual_mtas import VirtualMtaRepository


def relay(name: str) -> RelayServer:
    return RelayServer(
        name=name,
        source_ip="127.0.0.2",
        source_hostname="out.example.com",
        destination_hostname="127.0.0.1",
        destination_port=9,
        username=None,
        password=None,
        throttle_limits=Limits(0, 0),
    )


def insert_relay(url: str, name: str) -> int:
    store = Store.open(url, migrate=False)
    try:
        with store.write() as conn:
            return VirtualMtaRepository(conn).insert(relay(name))
    finally:
        store.close()


def rows(url: str, query: str) -> list[tuple[object, ...]]:
    store = Store.open(url, migrate=False)
    try:
        with store.read() as conn:
            return [tuple(row) for row in conn.exec_driver_sql(query)]
    finally:
        store.close()


def at_head(url: str) -> bool:
    store = Store.open(url, migrate=False)
    try:
        return database.current_revision(store.engine) == database.head_revision()
    finally:
        store.close()


def test_a_sqlite_copy_is_migrated_and_the_template_stays_untouched(tmp_path: Path) -> None:
    templates = MigratedTemplates(tmp_path, PG_URL)
    first, second = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    templates.sqlite_copy(first)
    assert at_head(first)
    assert insert_relay(first, "one") == 1
    templates.sqlite_copy(second)
    assert rows(second, "select name from virtual_mtas") == []
    assert insert_relay(second, "two") == 1
    seeded = "select name from throttle_programs"
    assert rows(second, seeded) == rows(first, seeded) != []


def test_the_postgresql_schema_is_emptied_back_to_its_migrated_state(
    tmp_path: Path, pg_admin: Engine
) -> None:
    templates = MigratedTemplates(tmp_path, PG_URL)
    try:
        url = templates.postgresql_url()
        assert at_head(url)
        seeded = rows(url, "select * from throttle_programs order by id")
        assert seeded
        assert insert_relay(url, "one") == 1
        assert insert_relay(url, "two") == 2

        assert templates.postgresql_url() == url  # reused, not rebuilt
        assert rows(url, "select name from virtual_mtas") == []
        assert rows(url, "select * from throttle_programs order by id") == seeded
        assert insert_relay(url, "three") == 1  # the sequence starts over
        assert at_head(url)
    finally:
        templates.close()


def test_a_schema_a_test_changed_is_rebuilt(tmp_path: Path, pg_admin: Engine) -> None:
    templates = MigratedTemplates(tmp_path, PG_URL)
    try:
        url = templates.postgresql_url()
        schema = url.rsplit("%3D", 1)[1]
        store = Store.open(url, migrate=False)
        try:
            with store.write() as conn:
                conn.execute(text("CREATE INDEX ix_extra ON virtual_mtas (type)"))
        finally:
            store.close()

        rebuilt = templates.postgresql_url()
        assert rebuilt != url
        assert at_head(rebuilt)
        with pg_admin.connect() as conn:
            names = conn.execute(
                text("select nspname from pg_namespace where nspname = :s"), {"s": schema}
            ).all()
            indexes = conn.execute(
                text("select indexname from pg_indexes where indexname = 'ix_extra'")
            ).all()
        assert names == []  # the changed schema was dropped
        assert indexes == []
    finally:
        templates.close()
