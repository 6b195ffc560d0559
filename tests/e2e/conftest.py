"""Fixtures of the data-plane tests that run `vmta serve` (tests/e2e/serve_process.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.serve_process import ServeFactory


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None: SQLite in the data directory (vmta's default); else a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield None
    else:
        yield request.getfixturevalue("pg_url")


@pytest.fixture
def serve(tmp_path: Path, database_url: str | None) -> Iterator[ServeFactory]:
    """Starts `vmta serve` runs on one data directory, SMTP port and database; every run
    still alive at the end is killed (before a PostgreSQL schema is dropped)."""
    factory = ServeFactory(tmp_path, database_url)
    try:
        yield factory
    finally:
        factory.close()
