"""Two nodes of a cluster starting at the same moment both find no `admin` credential
and both create it (runtime/bootstrap.py): the one whose insert loses must come up all
the same, not die on the unique name. PostgreSQL only: SQLite is one node's (its data
directory is locked to one `vmta serve`). The other node's insert is real, on a second
connection, made at the worst moment: after this node looked, before it inserted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vmta.domain.config.credential import hash_secret, secret_matches
from vmta.runtime.bootstrap import ADMIN_TOKEN_FILE, ensure_admin_credential
from vmta.runtime.settings import Settings
from vmta.store.credentials import CredentialRepository
from vmta.store.store import Store

OTHER_SECRET = "other-node-secret-0123456789abcdefghij"
OUR_TOKEN = "our-chosen-secret-0123456789abcdefghij"


@pytest.fixture
def stores(pg_url: str) -> Iterator[tuple[Store, Store]]:
    ours, theirs = Store.open(pg_url), Store.open(pg_url, migrate=False)
    try:
        yield ours, theirs
    finally:
        ours.close()
        theirs.close()


def other_node_inserts_inside_put(monkeypatch: pytest.MonkeyPatch, other: Store) -> None:
    """``put`` looks the name up, then inserts: the other node's insert commits in
    between, once."""
    original = CredentialRepository.by_name
    original_put = CredentialRepository.put
    state = {"in_put": False, "done": False}

    def by_name(self: CredentialRepository, name: str) -> Any:
        if state["in_put"] and not state["done"]:
            state["done"] = True
            with other.write() as conn:
                original_put(CredentialRepository(conn), name, hash_secret(OTHER_SECRET))
            return None  # what this node saw a moment before
        return original(self, name)

    def put(self: CredentialRepository, *args: Any, **kwargs: Any) -> None:
        state["in_put"] = True
        try:
            original_put(self, *args, **kwargs)
        finally:
            state["in_put"] = False

    monkeypatch.setattr(CredentialRepository, "by_name", by_name)
    monkeypatch.setattr(CredentialRepository, "put", put)


def admin_secret(store: Store) -> str:
    with store.read() as conn:
        found = CredentialRepository(conn).by_name("admin")
    assert found is not None
    return found.secret_sha256


def test_with_a_chosen_token_the_loser_sets_it_on_the_winners_credential(
    stores: tuple[Store, Store], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours, theirs = stores
    other_node_inserts_inside_put(monkeypatch, theirs)
    settings = Settings(data_dir=tmp_path, api_token=OUR_TOKEN)
    assert ensure_admin_credential(ours, settings) is None
    assert secret_matches(OUR_TOKEN, admin_secret(ours))


def test_without_a_token_the_loser_writes_no_file_and_leaves_the_winners_secret(
    stores: tuple[Store, Store], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours, theirs = stores
    other_node_inserts_inside_put(monkeypatch, theirs)
    assert ensure_admin_credential(ours, Settings(data_dir=tmp_path)) is None
    assert not (tmp_path / ADMIN_TOKEN_FILE).exists()  # it would hold a secret that fails
    assert secret_matches(OTHER_SECRET, admin_secret(ours))
