"""The Content-ID of an e-mail attachment, so the mail's HTML can show its inline images.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 04:30:00.000000

Written by hand. Only ``attachments`` changes: adding a nullable column is a plain ALTER TABLE
on both engines. Dropping it again (downgrade) rebuilds ``attachments`` on SQLite, which holds
none of the full-text search triggers of 0006 (those live on ``tickets`` and ``messages``).
Files stored before this revision keep no Content-ID; the inbox then matches them by file name.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("attachments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("content_id", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("attachments", schema=None) as batch_op:
        batch_op.drop_column("content_id")
