"""DKIM signing keys

Revision ID: 0011
Revises: 0007
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dkim_keys",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=True),
        sa.Column("domain", sa.String(200), nullable=False),
        sa.Column("domain_key", sa.String(200), nullable=False),
        sa.Column("selector", sa.String(200), nullable=False),
        sa.Column("selector_key", sa.String(200), nullable=False),
        sa.Column("default_for_domain", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("key_type", sa.String(16), nullable=False),
        sa.Column("key_bits", sa.Integer(), nullable=False),
        sa.Column("private_pem", sa.Text(), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("id", name="pk_dkim_keys"),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_dkim_keys_domain_key_selector_key",
        "dkim_keys",
        ["domain_key", "selector_key"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("ix_dkim_keys_domain_key_selector_key", table_name="dkim_keys")
    op.drop_table("dkim_keys")
