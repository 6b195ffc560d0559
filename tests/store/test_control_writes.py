"""Control-plane writes: the lock every write of the reference graph holds, and the
database's constraints read back as the rule they enforce when a writer skipped the
checks (an older vmta on another node, say)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from vmta.domain.config.virtual_mta import Limits, RelayServer, ThrottlingTemplate
from vmta.domain.errors import ValidationFailed
from vmta.store.control_writes import CONTROL_PLANE_KEY
from vmta.store.store import Store
from vmta.store.throttling_templates import ThrottlingTemplateRepository
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
        throttle_limits=Limits(1, 1),
    )


def test_unique_name_constraint_reads_back_as_name_taken(store: Store) -> None:
    with store.write() as conn:
        first = VirtualMtaRepository(conn).insert(relay("Taken"))
    with store.write() as conn:
        repo = VirtualMtaRepository(conn)
        # insert without prepare: the checks are skipped, the constraint is not
        with pytest.raises(ValidationFailed) as refused:
            repo.insert(relay("TAKEN"))
        assert refused.value.messages == [
            f"name 'TAKEN' is already used by another VirtualMTA (relay_server {first});"
            " names are unique ignoring case"
        ]
        # The savepoint was rolled back: the transaction goes on.
        second = repo.insert(relay("other"))
    with store.read() as conn:
        assert VirtualMtaRepository(conn).get(second) is not None


def test_template_name_constraint_reads_back_as_name_taken(store: Store) -> None:
    template = ThrottlingTemplate(name="T", default=Limits(1, 1), rules=[])
    with store.write() as conn:
        first = ThrottlingTemplateRepository(conn).insert(template)
    with store.write() as conn:
        repo = ThrottlingTemplateRepository(conn)
        repo.check_name = lambda *_a, **_k: None  # type: ignore[method-assign]
        with pytest.raises(ValidationFailed) as refused:
            repo.insert(ThrottlingTemplate(name="t", default=Limits(1, 1), rules=[]))
        assert refused.value.messages == [
            f"name 't' is already used by another throttling template (id {first});"
            " names are unique ignoring case"
        ]


def test_write_transactions_hold_the_control_plane_lock(pg_url: str) -> None:
    store = Store.open(pg_url)
    try:
        probe = "SELECT pg_try_advisory_xact_lock(:key)"
        with store.write() as conn:
            VirtualMtaRepository(conn)
            with store.read() as other:
                taken = other.execute(text(probe), {"key": CONTROL_PLANE_KEY}).scalar_one()
            assert taken is False
        with store.read() as conn:
            VirtualMtaRepository(conn)  # reading takes no lock
            with store.read() as other:
                free = other.execute(text(probe), {"key": CONTROL_PLANE_KEY}).scalar_one()
            assert free is True
    finally:
        store.close()
