"""Going back through every migration (``alembic downgrade``) keeps what the older schema
can hold: no recipient and no routing rule target is lost on the way. On SQLite a batch
copy of a table drops the old one, and with it (ON DELETE CASCADE) every row that refers
to it; the migrations drop columns in place instead. SQLite and PostgreSQL."""

from __future__ import annotations

from alembic import command
from sqlalchemy import text

from tests.delivery.conftest import rule
from vmta.domain.attempts.spool_records import NewMessage
from vmta.domain.config.virtual_mta import Limits, RandomizationType, RelayServer
from vmta.store import database
from vmta.store.spool import SqlSpool
from vmta.store.store import Store
from vmta.store.virtual_mtas import VirtualMtaRepository


def relay(name: str) -> RelayServer:
    return RelayServer(
        name=name,
        source_ip="127.0.0.2",
        source_hostname="out.vmta.test",
        destination_hostname="127.0.0.1",
        destination_port=2525,
        username=None,
        password=None,
        throttle_limits=Limits(0, 0),
    )


def test_downgrading_to_the_first_spool_revision_keeps_recipients_and_rule_targets(
    db_url: str,
) -> None:
    store = Store.open(db_url)  # migrated to the head
    try:
        with store.write() as conn:
            repo = VirtualMtaRepository(conn)
            for name in ("relay-a", "relay-b"):
                repo.insert(repo.prepare(relay(name), own_id=None))
            weighted = rule("spread", RandomizationType.RANDOM, ("relay-a", 1), ("relay-b", 1))
            repo.insert(repo.prepare(weighted, own_id=None))
        body = b"From: a@src.test\r\n\r\nbody\r\n"
        SqlSpool(store, "a").accept(
            [NewMessage("D1", 1.0, 2.0, "s@src.test", ["r1@x.test", "r2@x.test"], body)], None
        )
        command.downgrade(database.alembic_config(store.engine), "0002")
        with store.read() as conn:
            recipients = conn.execute(text("SELECT count(*) FROM recipients")).scalar_one()
            targets = conn.execute(text("SELECT count(*) FROM routing_rule_targets")).scalar_one()
        assert database.current_revision(store.engine) == "0002"
        assert recipients == 2
        assert targets == 2
    finally:
        store.close()
