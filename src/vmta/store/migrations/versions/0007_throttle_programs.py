"""throttle programs, their users, throttling rules of IP addresses

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The built-in program, as GreenArrow ships one ("Automatic Backoff", id 1): a destination
# deferring half of the recent attempts gets one connection and a quarter of its hourly
# rate for ten minutes.
BUILTIN = {
    "id": 1,
    "name": "Automatic Backoff",
    "name_key": "automatic backoff",
    "builtin": True,
    "backoff": {
        "max_concurrent_connections": {"mode": "fixed", "value": 1},
        "max_messages_per_hour": {"mode": "percent", "value": 25},
    },
    "return_after": 600,
    "notify": None,
    "failure_rate": None,
    "deferral_rate": 50,
}


def upgrade() -> None:
    programs = op.create_table(
        "throttle_programs",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("name_key", sa.String(200), nullable=False),
        sa.Column("builtin", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("backoff", sa.JSON(), nullable=False),
        sa.Column("return_after", sa.Integer(), nullable=False),
        sa.Column("notify", sa.String(254), nullable=True),
        sa.Column("failure_rate", sa.Integer(), nullable=True),
        sa.Column("deferral_rate", sa.Integer(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("id", name="pk_throttle_programs"),
        sa.UniqueConstraint("name_key", name="uq_throttle_programs_name_key"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "throttle_program_users",
        sa.Column("program_id", sa.Integer(), nullable=False),
        sa.Column("user_type", sa.String(30), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["throttle_programs.id"],
            name="fk_throttle_program_users_program_id_throttle_programs",
        ),
        sa.PrimaryKeyConstraint(
            "program_id", "user_type", "user_id", name="pk_throttle_program_users"
        ),
    )
    op.create_index(
        "ix_throttle_program_users_user_type_user_id",
        "throttle_program_users",
        ["user_type", "user_id"],
    )
    with op.batch_alter_table("virtual_mtas") as batch:
        batch.add_column(sa.Column("throttle_rules", sa.JSON(), nullable=True))
    op.bulk_insert(programs, [BUILTIN])
    if op.get_bind().dialect.name == "postgresql":
        # The row was given its id, so move the sequence past it.
        op.execute(
            "SELECT setval(pg_get_serial_sequence('throttle_programs', 'id'),"
            " (SELECT MAX(id) FROM throttle_programs))"
        )


def downgrade() -> None:
    # DROP COLUMN in place: a batch copy of virtual_mtas would drop the old table, and with
    # it (ON DELETE CASCADE) every routing rule's targets.
    op.drop_column("virtual_mtas", "throttle_rules")
    op.drop_index("ix_throttle_program_users_user_type_user_id", "throttle_program_users")
    op.drop_table("throttle_program_users")
    op.drop_table("throttle_programs")
