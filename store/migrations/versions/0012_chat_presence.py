"""Web chat presence: which process holds a socket of which visitor, for several web processes.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 06:40:00.000000

Written by hand: one new table, nothing else changes. A row is only a few seconds of truth
(renewed on a heartbeat by the process holding the socket), so dropping the table (downgrade)
loses nothing the running processes would not write again.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "chat_presence",
        sa.Column("visitor", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("connected", sa.Boolean(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("visitor", "holder", name=op.f("pk_chat_presence")),
    )
    op.create_index(
        op.f("ix_chat_presence_expires_at"), "chat_presence", ["expires_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_chat_presence_expires_at"), table_name="chat_presence")
    op.drop_table("chat_presence")
