"""Ticket references from a PostgreSQL sequence, so intake batches of several processes never queue.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 05:10:00.000000

Written by hand. Until now every intake batch raised the ``ticket_reference`` row of ``counters``
and held that row's lock until it committed, so the batches of all processes on one database
waited for each other. On PostgreSQL the numbers now come from the sequence
``ticket_reference_seq``: ``nextval`` never waits for another transaction. The price: a batch
that takes numbers and then rolls back does not give them back, so a reference number can be
skipped. References stay unique and keep their format.

The sequence starts right after the counter's value, so numbering goes on where it was; the
counter row is removed, as the sequence now holds the truth. Downgrade writes the sequence's
position back to the counter. SQLite has one writer anyway: it keeps the counter, and this
revision changes nothing there.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the names in store/models.py (REFERENCE_SEQUENCE) and ingest/pipeline.py
# (REFERENCE_COUNTER): a revision must not change when the code does.
SEQUENCE = "ticket_reference_seq"
COUNTER = "ticket_reference"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    # FOR UPDATE: a batch still committing on the old code finishes first, and its numbers count.
    last = bind.execute(
        sa.text("SELECT value FROM counters WHERE name = :name FOR UPDATE"), {"name": COUNTER}
    ).scalar_one_or_none()
    op.execute(f"CREATE SEQUENCE {SEQUENCE} AS bigint MINVALUE 1 START WITH {int(last or 0) + 1}")
    bind.execute(sa.text("DELETE FROM counters WHERE name = :name"), {"name": COUNTER})


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    last_value, is_called = bind.execute(
        sa.text(f"SELECT last_value, is_called FROM {SEQUENCE}")  # noqa: S608 (a constant)
    ).one()
    # Before the first nextval, last_value is the start value, not a number already given out.
    position = int(last_value) if is_called else int(last_value) - 1
    bind.execute(sa.text("DELETE FROM counters WHERE name = :name"), {"name": COUNTER})
    if position > 0:
        bind.execute(
            sa.text("INSERT INTO counters (name, value) VALUES (:name, :value)"),
            {"name": COUNTER, "value": position},
        )
    op.execute(f"DROP SEQUENCE {SEQUENCE}")
