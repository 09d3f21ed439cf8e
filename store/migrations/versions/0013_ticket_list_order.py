"""Ticket list: filter by department or channel and read in creation order from one index.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30 07:10:00.000000

Written by hand. The list shows tickets newest first, filtered by department or channel. With an
index on the filter column alone, SQLite found every ticket of the department (a quarter of the
store) and sorted them all for one page (0.1 s at 200,000 tickets). An index on (column,
created_at, id) gives that department's tickets already in order, so a page reads only its own
rows. They replace the indexes on department and origin_channel alone: an equality lookup uses
the wider index just as well, and intake keeps writing the same number of index entries.

Plain indexes, created and dropped without rebuilding the table, so the search triggers of 0006
stay.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (old single-column index, new index, its columns)
_REPLACED = (
    (
        "ix_tickets_department",
        "ix_tickets_department_created_at",
        ["department", "created_at", "id"],
    ),
    (
        "ix_tickets_origin_channel",
        "ix_tickets_origin_channel_created_at",
        ["origin_channel", "created_at", "id"],
    ),
)


def upgrade() -> None:
    for old, new, columns in _REPLACED:
        op.create_index(new, "tickets", columns, unique=False)
        op.drop_index(old, table_name="tickets")


def downgrade() -> None:
    for old, new, columns in reversed(_REPLACED):
        op.create_index(old, "tickets", columns[:1], unique=False)
        op.drop_index(new, table_name="tickets")
