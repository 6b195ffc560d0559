"""event outbox: events, event_deliveries, event_destinations

Revision ID: 0006
Revises: 0008
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("event_type", sa.String(32), nullable=False),
        sa.Column("message_id", sa.String(32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "event_deliveries",
        sa.Column("event_id", _ID, nullable=False),
        sa.Column("destination", sa.String(64), nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["events.id"],
            name="fk_event_deliveries_event_id_events",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("event_id", "destination", name="pk_event_deliveries"),
    )
    op.create_index(
        "ix_event_deliveries_destination_event_id",
        "event_deliveries",
        ["destination", "event_id"],
    )
    op.create_table(
        "event_destinations",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", sa.Double(), nullable=True),
        sa.Column("last_success_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_event_destinations"),
    )


def downgrade() -> None:
    op.drop_table("event_destinations")
    op.drop_index("ix_event_deliveries_destination_event_id", table_name="event_deliveries")
    op.drop_table("event_deliveries")
    op.drop_table("events")
