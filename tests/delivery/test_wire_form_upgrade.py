"""A spool written before bodies were stored in wire form (schema revision 0013) is
delivered exactly after the upgrade to 0014: the rows are not rewritten, each says it
holds its body as given, and the spool puts it in wire form as it reads it. Asserted on
what a real SMTP sink received, on SQLite and on PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, select, text

from tests.delivery.conftest import RunningPlane, eventually
from tests.peers.sink import RecordingSink
from vmta.domain.attempts.spool_records import NewMessage
from vmta.domain.config.virtual_mta import Limits, RelayServer
from vmta.domain.message.wire_form import AS_GIVEN, WIRE
from vmta.store import database
from vmta.store.spool import SqlSpool
from vmta.store.store import Store
from vmta.store.tables import messages
from vmta.store.virtual_mtas import VirtualMtaRepository

# What revision 0013 stored: the message as the intake had it (SMTP DATA un-stuffed, the
# HTTP and MailerQ APIs' text as given), with any line ends and no final CRLF required.
OLD_BODIES = {
    "OLDCRLF": (
        b"Received: from c ([127.0.0.1])\r\n\tby vmta.test (vmta) with ESMTP id OLDCRLF;\r\n"
        b"\tTue, 14 Nov 2023 22:13:20 +0000\r\nFrom: a@src.test\r\nSubject: dots\r\n\r\n"
        b".a line that starts with a dot\r\n..two dots\r\n.\r\n...\r\nlast line\r\n"
    ),
    "OLDNOEND": (
        b"From: a@src.test\r\nSubject: no final line end\r\n\r\n.dot first\r\n"
        b"the last line has no CRLF"
    ),
    "OLDBARELF": b"From: a@src.test\nSubject: bare LF\n\n.dot\nmixed\r\nends\rhere\n",
    "OLDDOTFIRST": b".starts the message\r\nFrom: a@src.test\r\n\r\nbody\r\n",
}


def as_sent(body: bytes) -> bytes:
    """What a receiver gets: line ends made CRLF, a final CRLF (RFC 5321 §2.3.8, §4.1.1.4:
    SMTP cannot carry a message whose last line does not end), the dots as they were."""
    body = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    return body if body.endswith(b"\r\n") else body + b"\r\n"


def write_at_0013(engine: Engine) -> None:
    """Rows as vmta at revision 0013 wrote them (its columns, its body format)."""
    now = time.time()  # the engine's clock: the rows are due and far from expiring
    with engine.begin() as conn:
        for queue_id, body in OLD_BODIES.items():
            conn.execute(
                text(
                    "INSERT INTO messages (id, received_at, expires_at, mail_from, size, body,"
                    " vmta_selector, is_bounce) VALUES (:id, :at, :expires, :sender, :size,"
                    " :body, 'relay-1', :bounce)"
                ),
                {
                    "id": queue_id,
                    "at": now,
                    "expires": now + 3600,
                    "sender": "sender@src.test",
                    "size": len(body),
                    "body": body,
                    "bounce": False,
                },
            )
            conn.execute(
                text(
                    "INSERT INTO recipients (message_id, address, state, attempts,"
                    " next_attempt_at, updated_at) VALUES (:id, :rcpt, 'queued', 0, :at, :at)"
                ),
                {"id": queue_id, "rcpt": f"{queue_id.lower()}@dest.test", "at": now},
            )


@pytest.fixture
def sink(sink_factory: Any) -> RecordingSink:
    made: RecordingSink = sink_factory()
    return made


@pytest.fixture
def store(db_url: str, sink: RecordingSink) -> Iterator[Store]:
    """The spool written at revision 0013, then upgraded as ``vmta serve`` does at start,
    with the relay its messages name (the sink)."""
    engine = database.create_db_engine(db_url)
    database.upgrade(engine, "0013")
    write_at_0013(engine)
    engine.dispose()
    upgraded = Store.open(db_url)  # migrates to the head
    relay = RelayServer(
        name="relay-1",
        source_ip="127.0.0.2",
        source_hostname="out.vmta.test",
        destination_hostname="127.0.0.1",
        destination_port=sink.port,
        username=None,
        password=None,
        throttle_limits=Limits(0, 0),
    )
    with upgraded.write() as conn:
        repo = VirtualMtaRepository(conn)
        repo.insert(repo.prepare(relay, own_id=None))
    try:
        yield upgraded
    finally:
        upgraded.close()


def stored_rows(store: Store) -> dict[str, tuple[bytes, int]]:
    with store.read() as conn:
        rows = conn.execute(select(messages.c.id, messages.c.body, messages.c.body_format))
        return {row.id: (bytes(row.body), row.body_format) for row in rows}


async def test_a_spool_of_revision_0013_is_delivered_exactly_after_the_upgrade(
    store: Store, plane_factory: Any, sink: RecordingSink
) -> None:
    assert database.current_revision(store.engine) == database.SCHEMA_HEAD == "0014"
    # The upgrade rewrote no body: each old row says it holds the message as given.
    assert stored_rows(store) == {key: (body, AS_GIVEN) for key, body in OLD_BODIES.items()}

    plane: RunningPlane = await plane_factory()
    # A message accepted after the upgrade shares the spool and the connection.
    new_id = await plane.asend(
        b"X-GreenArrow-MtaID: relay-1\r\nFrom: a@src.test\r\nSubject: new\r\n\r\n"
        b".new dot line\r\n..and two\r\n"
    )

    await eventually(lambda: len(sink.messages) == len(OLD_BODIES) + 1, what="deliveries")
    received = {m.rcpt_tos[0]: m for m in sink.messages}
    for queue_id, body in OLD_BODIES.items():
        seen = received[f"{queue_id.lower()}@dest.test"]
        assert seen.data == as_sent(body), queue_id
        assert f"SIZE={len(as_sent(body))}" in seen.mail_options  # RFC 1870 §3
    new = received["rcpt@dest.test"]
    assert new.data.endswith(
        b"From: a@src.test\r\nSubject: new\r\n\r\n.new dot line\r\n..and two\r\n"
    )
    assert f"SIZE={len(new.data)}" in new.mail_options
    assert stored_rows(store)[new_id] == (
        new.data.replace(b"\r\n.", b"\r\n.."),  # kept in wire form: dot-stuffed
        WIRE,
    )
    # The sink has the messages as soon as it answers the final dot; each outcome is
    # stored after that reply, by the spool writer.
    await eventually(
        lambda: all(plane.message(key).recipients[0]["state"] == "delivered" for key in OLD_BODIES),
        what="every old message recorded as delivered",
    )


def test_a_downgrade_to_0013_gives_back_bodies_as_given(db_url: str) -> None:
    """Back to revision 0013 (``alembic downgrade``), a wire-form body is un-stuffed, as
    0013 reads every body, and no message or recipient is lost."""
    from alembic import command

    store = Store.open(db_url)
    wire = b"From: a@src.test\r\n\r\n..dot\r\n...two\r\nend\r\n"
    try:
        spool = SqlSpool(store, "a")
        spool.accept([NewMessage("W1", 1.0, 2.0, "", ["r@x.test"], wire, wire_form=True)], None)
        command.downgrade(database.alembic_config(store.engine), "0013")
        with store.read() as conn:
            body = conn.execute(text("SELECT body FROM messages WHERE id = 'W1'")).scalar_one()
            recipients = conn.execute(text("SELECT count(*) FROM recipients")).scalar_one()
        assert bytes(body) == b"From: a@src.test\r\n\r\n.dot\r\n..two\r\nend\r\n"
        assert recipients == 1
        assert database.current_revision(store.engine) == "0013"
    finally:
        store.close()
