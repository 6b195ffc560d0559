"""Alembic environment: vmta passes its engine in ``config.attributes['engine']``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from vmta.store.tables import metadata

config = context.config
engine = config.attributes["engine"]

with engine.begin() as connection:
    if connection.dialect.name == "postgresql":
        # Nodes of a cluster started at once would all migrate a fresh schema, and all
        # but one fail on the tables the first created. One migrates at a time (per
        # schema; the lock ends with this transaction); the others then find the schema
        # at its head and have nothing to do.
        connection.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.vmta.migrate'))")
        )
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    context.run_migrations()
