"""Leases: one row per background job that must run in one process at a time (a mailbox's reader).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 04:40:00.000000

Written by hand: one new table, nothing else changes. A lease is only ever a few seconds of
truth, so dropping the table (downgrade) loses nothing a running service could not take again.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_leases")),
    )


def downgrade() -> None:
    op.drop_table("leases")
