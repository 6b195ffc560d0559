"""The DKIM key repository and the signer's keyring on SQLite and PostgreSQL: lists
without private keys, one default per domain, and a keyring that reloads its key objects
only when the table changed (a fingerprint that every create, update and delete moves)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from tests.manual_clock import ManualClock
from vmta.domain.config.dkim_key import DkimKey
from vmta.domain.errors import ValidationFailed
from vmta.signing import keyring as keyring_module
from vmta.signing.keyring import Keyring
from vmta.signing.keys import generate
from vmta.store.dkim_keys import DkimKeyRepository
from vmta.store.store import Store

ED = generate("ed25519", None)  # cheap to make; the repository does not look inside


def add(store: Store, domain: str, selector: str, default: bool = False) -> int:
    with store.write() as conn:
        return DkimKeyRepository(conn).create(DkimKey(domain, selector, default, ED))


def fingerprint(store: Store) -> tuple[int, int, int]:
    with store.read() as conn:
        return DkimKeyRepository(conn).fingerprint()


def test_list_never_holds_private_keys_and_one_default_per_domain(store: Store) -> None:
    first = add(store, "example.com", "a", default=True)
    second = add(store, "EXAMPLE.com", "b", default=True)
    add(store, "other.com", "a", default=True)
    with store.read() as conn:
        repo = DkimKeyRepository(conn)
        rows = repo.list()
        assert [(r.id, r.selector, r.default_for_domain) for r in rows if r.id != 3] == [
            (first, "a", False),
            (second, "b", True),
        ]
        assert all(not hasattr(r, "material") and "PRIVATE" not in repr(r) for r in rows)
        assert [r.dns_name for r in repo.list("example.COM")] == [
            "a._domainkey.example.com",
            "b._domainkey.EXAMPLE.com",
        ]
        assert repo.list("example.com")[0].dns_value == f"k=ed25519; p={ED.public}"
        got = repo.get(first)
        assert got is not None and got.material.private_pem == ED.private_pem
        assert "PRIVATE" not in repr(got)
    with pytest.raises(ValidationFailed) as refused:
        add(store, "Example.Com", "A")
    assert "selectors are unique per domain ignoring case" in refused.value.messages[0]


def test_fingerprint_moves_on_every_change(store: Store) -> None:
    seen = {fingerprint(store)}
    key_id = add(store, "example.com", "a")
    seen.add(fingerprint(store))
    with store.write() as conn:
        repo = DkimKeyRepository(conn)
        current = repo.get(key_id)
        assert current is not None
        repo.update(key_id, replace(current, default_for_domain=True))
    seen.add(fingerprint(store))
    other = add(store, "example.com", "b", default=True)  # clears a's default: a change
    seen.add(fingerprint(store))
    with store.write() as conn:
        DkimKeyRepository(conn).delete(other)
    seen.add(fingerprint(store))
    assert len(seen) == 5


async def test_keyring_loads_keys_once_and_again_only_after_a_change(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[int] = []
    real = keyring_module.key_set

    def counting(records: object) -> keyring_module.KeySet:
        loads.append(1)
        return real(records)  # type: ignore[arg-type]

    monkeypatch.setattr(keyring_module, "key_set", counting)
    clock = ManualClock(1000.0)
    ring = Keyring(store, clock, ttl=1.0)
    add(store, "example.com", "a", default=True)
    keys = await ring.keys()
    assert keys.find("EXAMPLE.com", None) is not None and len(loads) == 1
    for _ in range(5):  # within the second, and after it with nothing changed: no reload
        await ring.keys()
        clock.advance(0.5)
    assert len(loads) == 1
    add(store, "example.com", "b", default=True)
    assert (await ring.keys()).find("example.com", None) is not None
    clock.advance(1.0)
    # Past the second a reload starts in the background, and the keys held answer at
    # once: a message never waits for the database once keys were loaded.
    held = (await ring.keys()).find("example.com", None)
    assert held is not None and held.selector == "a"
    for _ in range(500):  # bounded: the reload runs in the keyring's thread
        if len(loads) == 2:
            break
        await asyncio.sleep(0.01)
    changed = await ring.keys()
    assert len(loads) == 2
    default = changed.find("example.com", None)
    assert default is not None and default.selector == "b"
    assert changed.find("example.com", "A") is not None
