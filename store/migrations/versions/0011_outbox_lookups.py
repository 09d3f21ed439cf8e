"""Outbox: how often the provider was asked in vain about an uncertain send.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 07:00:00.000000

Written by hand. The dispatcher asks a channel's provider whether a send that was interrupted or
timed out went out after all; when the look-up itself fails it tries again a few times with
back-off. ``lookups`` counts those failures so the retries stop and staff decide.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch_op:
        batch_op.add_column(sa.Column("lookups", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch_op:
        batch_op.drop_column("lookups")
