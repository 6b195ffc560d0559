"""Schemathesis over /openapi.json, in the test suite, on SQLite and on PostgreSQL: every
operation, generated from the document (valid and invalid data), then its stateful phase
(sequences of calls that feed one answer's ids into the next request). Every check it
has, with the allowances of ``schemathesis.toml`` (400 where no schema can say why), must
pass: no 500, no status or body the document does not declare, no schema-valid request
refused for a reason the schema could have stated, no invalid one accepted.

The app runs without a data plane, so nothing a fuzzed VirtualMTA says can send mail."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.schemas import BaseSchema
from sqlalchemy import create_engine, delete, text, update

from tests.api.conftest import serving
from tests.conftest import PG_URL, TEST_SECRET, pg_problem, skip_or_fail
from vmta.api.app import create_app
from vmta.api.ports import ApiPorts
from vmta.domain.config.credential import hash_secret
from vmta.store.credentials import CredentialRepository
from vmta.store.store import Store
from vmta.store.tables import control_settings, metadata

CONFIG_FILE = Path(__file__).parents[2] / "schemathesis.toml"
AUTH = {"Authorization": f"Bearer {TEST_SECRET}"}
# Bounds the run (well under a minute per database on a shared machine); a failure found
# is a failure, however few examples found it.
EXAMPLES = 6
STATEFUL_EXAMPLES = 20
STATEFUL_STEPS = 8
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)


def _load_schema() -> BaseSchema:
    """The document as the app serves it (it does not depend on the database)."""
    store = Store.open("sqlite://")
    try:
        document = create_app(ApiPorts(store, data_plane=None)).openapi()
    finally:
        store.close()
    # The coverage phase (boundary values of every keyword) builds its cases when tests
    # are collected, minutes for these patterns on a shared machine: `schemathesis run`
    # with schemathesis.toml runs it (see docs); the suite runs the generated and the
    # stateful phases.
    settings_text = CONFIG_FILE.read_text() + "\n[phases.coverage]\nenabled = false\n"
    config = SchemathesisConfig.from_str(settings_text, base_dir=str(CONFIG_FILE.parent))
    return schemathesis.openapi.from_dict(document, config=config)


SCHEMA = _load_schema()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fuzzed_api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """One live API per database for the whole module: records that earlier operations
    created stay, so later ones meet a store that is not empty."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'vmta.db'}"
        with _served(url) as base_url:
            yield base_url
        return
    problem = pg_problem()
    if problem:
        skip_or_fail(problem)
    schema = f"t_fuzz_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        with _served(f"{PG_URL}?options=-csearch_path%3D{schema}") as base_url:
            yield base_url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


# The store behind each live API, by its base URL (for the stateful phase's reset).
STORES: dict[str, Store] = {}
# What a stateful example may have written; each example begins without it.
RESET_TABLES = [
    t
    for t in reversed(metadata.sorted_tables)
    if t.name not in {"api_credentials", "item_ids", "control_settings", "nodes"}
]


@contextmanager
def _served(url: str) -> Iterator[str]:
    store = Store.open(url)
    try:
        with store.write() as conn:
            CredentialRepository(conn).put("admin", hash_secret(TEST_SECRET))
        with serving(store) as base_url:
            STORES[base_url] = store
            yield base_url
    finally:
        store.close()


def reset(store: Store) -> None:
    """Back to an empty configuration and spool (the credential stays)."""
    with store.write() as conn:
        conn.execute(update(control_settings).values(default_virtual_mta_id=None))
        for table in RESET_TABLES:
            conn.execute(delete(table))


@SCHEMA.parametrize()
@FUZZ_SETTINGS
def test_every_operation(case: Any, fuzzed_api: str) -> None:
    case.call_and_validate(base_url=fuzzed_api, headers=AUTH)


def test_stateful_sequences(fuzzed_api: str) -> None:
    live_api = fuzzed_api
    machine = SCHEMA.as_state_machine()

    class Live(machine):  # type: ignore[misc,valid-type]
        def setup(self) -> None:
            # Each example starts from the same empty store. Hypothesis replays a failing
            # example to report it; on a store that earlier examples had filled, the
            # replay took other steps, and hypothesis reported FlakyStrategyDefinition
            # instead of the failure (seen in full-suite runs, on both databases).
            reset(STORES[live_api])

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"base_url": live_api, "headers": AUTH}

    Live.run(
        settings=settings(
            max_examples=STATEFUL_EXAMPLES,
            stateful_step_count=STATEFUL_STEPS,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
    )
