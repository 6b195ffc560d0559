"""incoming email domains, their mailboxes, inbound mail, feedback reports, secrets

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "incoming_email_domains",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("domain", sa.String(200), nullable=False),
        sa.Column("domain_key", sa.String(200), nullable=False),
        sa.Column("email_status", sa.String(10), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_incoming_email_domains"),
        sa.UniqueConstraint("domain_key", name="uq_incoming_email_domains_domain_key"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "incoming_mailboxes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("domain_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("localpart", sa.String(64), nullable=False),
        sa.Column("localpart_key", sa.String(64), nullable=False),
        sa.Column("forward_to", sa.JSON(), nullable=True),
        sa.Column("is_wildcard", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.ForeignKeyConstraint(
            ["domain_id"],
            ["incoming_email_domains.id"],
            name="fk_incoming_mailboxes_domain_id_incoming_email_domains",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_incoming_mailboxes"),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_incoming_mailboxes_domain_id_localpart_key",
        "incoming_mailboxes",
        ["domain_id", "localpart_key"],
        unique=True,
    )
    op.create_table(
        "inbound_messages",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("received_at", sa.Double(), nullable=False),
        sa.Column("mail_from", sa.Text(), nullable=False),
        sa.Column("recipients", sa.JSON(), nullable=False),
        sa.Column("client_ip", sa.String(45), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_inbound_messages"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "feedback_reports",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("received_at", sa.Double(), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("matched", sa.Boolean(), nullable=False),
        sa.Column("mailbox", sa.Text(), nullable=False),
        sa.Column("queue_id", sa.String(32), nullable=True),
        sa.Column("recipient", sa.Text(), nullable=True),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_feedback_reports"),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_feedback_reports_matched_received_at",
        "feedback_reports",
        ["matched", "received_at"],
    )
    op.create_table(
        "installation_secrets",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_installation_secrets"),
    )


def downgrade() -> None:
    op.drop_table("installation_secrets")
    op.drop_index("ix_feedback_reports_matched_received_at", table_name="feedback_reports")
    op.drop_table("feedback_reports")
    op.drop_table("inbound_messages")
    op.drop_index("ix_incoming_mailboxes_domain_id_localpart_key", table_name="incoming_mailboxes")
    op.drop_table("incoming_mailboxes")
    op.drop_table("incoming_email_domains")
