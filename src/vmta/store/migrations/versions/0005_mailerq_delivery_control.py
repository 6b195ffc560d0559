"""MailerQ delivery control (pools, pauses, forced errors, suppressions) and
messages.mq_options

Revision ID: 0005
Revises: 0010
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _matcher_columns() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("matcher_key", sa.String(length=1200), nullable=False),
        sa.Column("pool", sa.String(length=100), nullable=True),
        sa.Column("mta", sa.String(length=45), nullable=True),
        sa.Column("domain", sa.String(length=255), nullable=True),
        sa.Column("ip", sa.String(length=45), nullable=True),
        sa.Column("tag", sa.String(length=500), nullable=True),
        sa.Column("cluster", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("expire", sa.Double(), nullable=True),
    ]


def upgrade() -> None:
    op.create_table(
        "mq_pools",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mq_pools")),
        sa.UniqueConstraint("name", name=op.f("uq_mq_pools_name")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "mq_pool_ips",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("pool_id", sa.Integer(), nullable=False),
        sa.Column("ip", sa.String(length=45), nullable=False),
        sa.ForeignKeyConstraint(
            ["pool_id"],
            ["mq_pools.id"],
            name=op.f("fk_mq_pool_ips_pool_id_mq_pools"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mq_pool_ips")),
        sa.UniqueConstraint("ip", name=op.f("uq_mq_pool_ips_ip")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_mq_pool_ips_pool_id", "mq_pool_ips", ["pool_id"], unique=False)
    op.create_table(
        "mq_pauses",
        *_matcher_columns(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mq_pauses")),
        sa.UniqueConstraint("matcher_key", name=op.f("uq_mq_pauses_matcher_key")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "mq_forced_errors",
        *_matcher_columns(),
        sa.Column("code", sa.Integer(), nullable=False),
        sa.Column("extended", sa.String(length=20), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mq_forced_errors")),
        sa.UniqueConstraint("matcher_key", name=op.f("uq_mq_forced_errors_matcher_key")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "mq_suppressions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("value_key", sa.String(length=320), nullable=False),
        sa.Column("value", sa.String(length=320), nullable=False),
        sa.Column("type", sa.String(length=10), nullable=False),
        sa.Column("code", sa.Integer(), nullable=False),
        sa.Column("extended", sa.String(length=20), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mq_suppressions")),
        sa.UniqueConstraint("value_key", name=op.f("uq_mq_suppressions_value_key")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("mq_options", sa.JSON(), nullable=True))


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN (SQLite 3.35 and later): a batch copy of the table would
    # drop the old one, and with it (ON DELETE CASCADE) every recipient.
    op.drop_column("messages", "mq_options")
    op.drop_table("mq_suppressions")
    op.drop_table("mq_forced_errors")
    op.drop_table("mq_pauses")
    op.drop_index("ix_mq_pool_ips_pool_id", table_name="mq_pool_ips")
    op.drop_table("mq_pool_ips")
    op.drop_table("mq_pools")
