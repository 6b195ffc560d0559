"""Alembic environment: vmta passes its engine in ``config.attributes['engine']``."""

from __future__ import annotations

from alembic import context

from vmta.store.tables import metadata

config = context.config
engine = config.attributes["engine"]

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    context.run_migrations()
