"""MailerQ options travel with a message: written at accept, read back on every claim
(fast path and poll), on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace

from tests.store.test_spool import T0, message
from vmta.store.spool import SqlSpool
from vmta.store.store import Store

OPTIONS = {
    "ips": ["198.51.100.7"],
    "tags": ["a", "b"],
    "maxattempts": 3,
    "retries": [60.0, 120.0],
    "document": {"recipient": "r@x.test", "queues": {"results": "mine"}},
}


def test_mq_options_round_trip(store: Store) -> None:
    spool = SqlSpool(store, "node-a")
    with_options = replace(message("Q1", ["r@x.test"]), mq_options=OPTIONS)
    jobs = spool.accept([with_options, message("Q2", ["s@x.test"])], lease_until=T0 + 300)
    assert [j.mq_options for j in jobs] == [OPTIONS, None]
    claimed = SqlSpool(store, "node-b").claim_due(T0 + 301, 10, T0 + 700)
    assert {j.message_id: j.mq_options for j in claimed} == {"Q1": OPTIONS, "Q2": None}
