"""bounce counts, bad addresses, where each attempt ended

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "address_bounces",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=True),
        sa.Column("address_key", sa.String(length=320), nullable=False),
        sa.Column("list_key", sa.String(length=200), nullable=False),
        sa.Column("bounce_type", sa.String(length=1), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_address_bounces")),
    )
    op.create_index(
        "ix_address_bounces_address_key_list_key",
        "address_bounces",
        ["address_key", "list_key"],
    )
    op.create_table(
        "bad_addresses",
        sa.Column("address_key", sa.String(length=320), nullable=False),
        sa.Column("list_key", sa.String(length=200), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("address_key", "list_key", name=op.f("pk_bad_addresses")),
    )
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("stage", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("result", sa.String(length=10), nullable=True))
        batch.add_column(sa.Column("session_messages", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("remote_dsn", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("remote_dsn")
        batch.drop_column("session_messages")
        batch.drop_column("result")
        batch.drop_column("stage")
    op.drop_table("bad_addresses")
    op.drop_index("ix_address_bounces_address_key_list_key", table_name="address_bounces")
    op.drop_table("address_bounces")
