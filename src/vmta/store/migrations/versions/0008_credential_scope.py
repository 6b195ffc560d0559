"""api_credentials.scope, and room for salted secret hashes

Revision ID: 0008
Revises: 0005
Create Date: 2026-12-01

Every existing credential becomes ``admin``: it keeps every endpoint it could use.
``secret_sha256`` grows to hold a salted scrypt hash (``scrypt$N$r$p$salt$hash``) of an
operator-chosen secret (``VMTA_API_TOKEN``); the next start re-hashes that one.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_credentials") as batch:
        batch.add_column(sa.Column("scope", sa.String(16), nullable=False, server_default="admin"))
        batch.alter_column(
            "secret_sha256", type_=sa.String(200), existing_type=sa.String(64), nullable=False
        )


def downgrade() -> None:
    with op.batch_alter_table("api_credentials") as batch:
        batch.drop_column("scope")
