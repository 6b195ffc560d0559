"""control plane

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_credentials",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("secret_sha256", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_credentials")),
        sa.UniqueConstraint("name", name=op.f("uq_api_credentials_name")),
        sa.UniqueConstraint("secret_sha256", name=op.f("uq_api_credentials_secret_sha256")),
    )
    op.create_table(
        "external_mtas",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("public_ip", sa.String(length=45), nullable=False),
        sa.Column("local_ip", sa.String(length=45), nullable=False),
        sa.Column("connect_ip", sa.String(length=45), nullable=True),
        sa.Column("connect_port", sa.Integer(), nullable=False),
        sa.Column("protocol", sa.String(length=10), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_external_mtas")),
        sa.UniqueConstraint("public_ip", name=op.f("uq_external_mtas_public_ip")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "item_ids",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_item_ids")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "throttling_templates",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("name_key", sa.String(length=200), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("default_max_concurrent_connections", sa.Integer(), nullable=False),
        sa.Column("default_max_messages_per_hour", sa.Integer(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_throttling_templates")),
        sa.UniqueConstraint("name_key", name=op.f("uq_throttling_templates_name_key")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "virtual_mtas",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("name_key", sa.String(length=200), nullable=False),
        sa.Column("redirect_id", sa.Integer(), nullable=True),
        sa.Column("ip", sa.String(length=45), nullable=True),
        sa.Column("hostname", sa.String(length=200), nullable=True),
        sa.Column("destination_hostname", sa.String(length=200), nullable=True),
        sa.Column("destination_port", sa.Integer(), nullable=True),
        sa.Column("username", sa.String(length=200), nullable=True),
        sa.Column("password", sa.String(length=200), nullable=True),
        sa.Column("max_concurrent_connections", sa.Integer(), nullable=True),
        sa.Column("max_messages_per_hour", sa.Integer(), nullable=True),
        sa.Column("delivery_paused", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("throttling_template_id", sa.Integer(), nullable=True),
        sa.Column("routing", sa.JSON(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["redirect_id"],
            ["virtual_mtas.id"],
            name=op.f("fk_virtual_mtas_redirect_id_virtual_mtas"),
        ),
        sa.ForeignKeyConstraint(
            ["throttling_template_id"],
            ["throttling_templates.id"],
            name=op.f("fk_virtual_mtas_throttling_template_id_throttling_templates"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_virtual_mtas")),
        sa.UniqueConstraint("name_key", name=op.f("uq_virtual_mtas_name_key")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("virtual_mtas", schema=None) as batch_op:
        batch_op.create_index("ix_virtual_mtas_ip", ["ip"], unique=False)
        batch_op.create_index("ix_virtual_mtas_redirect_id", ["redirect_id"], unique=False)
        batch_op.create_index("ix_virtual_mtas_type_id", ["type", "id"], unique=False)

    op.create_table(
        "control_settings",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("default_virtual_mta_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["default_virtual_mta_id"],
            ["virtual_mtas.id"],
            name=op.f("fk_control_settings_default_virtual_mta_id_virtual_mtas"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_control_settings")),
    )
    op.create_table(
        "routing_rule_targets",
        sa.Column("rule_id", sa.Integer(), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["rule_id"],
            ["virtual_mtas.id"],
            name=op.f("fk_routing_rule_targets_rule_id_virtual_mtas"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["target_id"],
            ["virtual_mtas.id"],
            name=op.f("fk_routing_rule_targets_target_id_virtual_mtas"),
        ),
        sa.PrimaryKeyConstraint("rule_id", "target_id", name=op.f("pk_routing_rule_targets")),
    )
    with op.batch_alter_table("routing_rule_targets", schema=None) as batch_op:
        batch_op.create_index("ix_routing_rule_targets_target_id", ["target_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("routing_rule_targets", schema=None) as batch_op:
        batch_op.drop_index("ix_routing_rule_targets_target_id")

    op.drop_table("routing_rule_targets")
    op.drop_table("control_settings")
    with op.batch_alter_table("virtual_mtas", schema=None) as batch_op:
        batch_op.drop_index("ix_virtual_mtas_type_id")
        batch_op.drop_index("ix_virtual_mtas_redirect_id")
        batch_op.drop_index("ix_virtual_mtas_ip")

    op.drop_table("virtual_mtas")
    op.drop_table("throttling_templates")
    op.drop_table("item_ids")
    op.drop_table("external_mtas")
    op.drop_table("api_credentials")
