"""The external MTA repository on SQLite and PostgreSQL: order, replace, remove, races."""

from __future__ import annotations

import threading

from sqlalchemy import func, select

from vmta.domain.config.external_mta import ExternalMtaProtocol, external_mta
from vmta.store.external_mtas import ExternalMtaRepository
from vmta.store.store import Store
from vmta.store.tables import external_mtas


def put(store: Store, public_ip: str, port: int = 2525, **extra: str) -> None:
    with store.write() as conn:
        ExternalMtaRepository(conn).put(
            external_mta(public_ip=public_ip, local_ip="127.0.0.1", connect_port=port, **extra)
        )


def listed(store: Store) -> list[tuple[str, int]]:
    with store.read() as conn:
        return [(m.public_ip, m.connect_port) for m in ExternalMtaRepository(conn).all()]


def test_creation_order_and_replace_in_place(store: Store) -> None:
    put(store, "8.8.8.8")
    put(store, "8.8.4.4")
    put(store, "2001:db8::1")
    put(store, "8.8.4.4", 1080, protocol="socks", connect_ip="127.0.0.9")
    assert listed(store) == [("8.8.8.8", 2525), ("8.8.4.4", 1080), ("2001:db8::1", 2525)]
    with store.read() as conn:
        replaced = ExternalMtaRepository(conn).get("8.8.4.4")
        count = conn.execute(select(func.count()).select_from(external_mtas)).scalar_one()
    assert count == 3
    assert replaced is not None
    assert replaced.protocol is ExternalMtaProtocol.SOCKS and replaced.connect_ip == "127.0.0.9"


def test_replace_clears_connect_ip(store: Store) -> None:
    put(store, "8.8.8.8", connect_ip="127.0.0.9")
    put(store, "8.8.8.8")
    with store.read() as conn:
        mta = ExternalMtaRepository(conn).get("8.8.8.8")
    assert mta is not None and mta.connect_ip is None


def test_remove(store: Store) -> None:
    put(store, "8.8.8.8")
    put(store, "8.8.4.4")
    with store.write() as conn:
        repo = ExternalMtaRepository(conn)
        removed = repo.remove("8.8.8.8")
        assert removed is not None and removed.public_ip == "8.8.8.8"
        assert repo.remove("8.8.8.8") is None
        assert repo.remove("1.2.3.4") is None
    assert listed(store) == [("8.8.4.4", 2525)]


def test_concurrent_adds_of_one_public_ip_all_succeed_and_keep_one_row(store: Store) -> None:
    writers = 8
    barrier = threading.Barrier(writers)
    failures: list[BaseException] = []

    def add(port: int) -> None:
        try:
            barrier.wait(timeout=10)
            put(store, "198.51.100.1", port)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=add, args=(1000 + n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert failures == []
    (only,) = listed(store)
    assert only[0] == "198.51.100.1" and 1000 <= only[1] < 1000 + writers
