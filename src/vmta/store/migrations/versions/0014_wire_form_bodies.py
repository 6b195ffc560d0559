"""message bodies stored in wire form, marked per row

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07

Bodies are stored from now on in wire form, dot-stuffed with CRLF line ends
(domain/message/wire_form.py). Rows already in the spool keep their bytes: ``body_format`` says
what each row holds, and its default, 0 (as given), is what every row written before
this revision holds. The spool puts such a body in wire form when it reads it, as the
SMTP client used to at each attempt. No body is rewritten here: adding a column with a
constant default is a change of the catalogue on SQLite and on PostgreSQL (11 and
later), whatever the spool's size (docs/architecture.md, "Bodies in wire form").
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "messages",
        sa.Column("body_format", sa.SmallInteger(), nullable=False, server_default=sa.text("0")),
    )


def downgrade() -> None:
    # Back to 0013, which reads every body as given: wire-form bodies are un-stuffed (their
    # CRLFs are what 0013's client sends anyway), a few hundred at a time.
    bind = op.get_bind()
    last = ""
    while True:
        rows = bind.execute(
            sa.text(
                "SELECT id, body FROM messages WHERE body_format = 1 AND id > :last"
                " ORDER BY id LIMIT 200"
            ),
            {"last": last},
        ).all()
        if not rows:
            break
        for message_id, stored in rows:
            body = bytes(stored)
            if body.startswith(b"."):
                body = body[1:]
            bind.execute(
                sa.text("UPDATE messages SET body = :body WHERE id = :id"),
                {"body": body.replace(b"\r\n.", b"\r\n"), "id": message_id},
            )
        last = rows[-1][0]
    # ALTER TABLE ... DROP COLUMN, which SQLite has since 3.35: a batch copy of the table
    # would drop the old one, and with it (ON DELETE CASCADE) every recipient.
    op.drop_column("messages", "body_format")
