"""Outbox: when the provider call of a row's current attempt started.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 05:20:00.000000

Written by hand. The dispatcher claims a batch of rows (``sending``) but calls the provider for
one row at a time; ``attempt_started_at`` is set, and committed, just before that row's call.
After a crash only rows with it set can have reached the provider (they become ``uncertain``);
the rest of the batch goes back to ``pending``. Rows already ``sending`` when this runs were left
by the old dispatcher, which did not say which call had started: they keep the old, careful
meaning (every one of them may have gone out), so their claim time is copied in.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch_op:
        batch_op.add_column(
            sa.Column("attempt_started_at", sa.DateTime(timezone=True), nullable=True)
        )
    op.execute("UPDATE outbox SET attempt_started_at = claimed_at WHERE state = 'sending'")


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch_op:
        batch_op.drop_column("attempt_started_at")
