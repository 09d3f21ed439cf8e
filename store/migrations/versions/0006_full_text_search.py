"""Full-text search over ticket subjects and message texts, and indexes for the ticket list.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 03:45:00.000000

Written by hand. The ticket list pages by keyset on (created_at, id) or (updated_at, id), filters
by assignee, counts open work per view and asks for the latest change per department every few
seconds: plain indexes.

Search, per engine:

- SQLite: two FTS5 tables with external content (the text stays in ``tickets`` and
  ``messages``; the index holds only the words), tokenised with ``unicode61 remove_diacritics 2``
  (case and accents ignored), kept in step by triggers. A later revision that rebuilds
  ``tickets`` or ``messages`` in batch mode (copy, drop, rename) drops these triggers with the
  old table: it must create them again (``_TRIGGERS`` below).
- PostgreSQL: GIN indexes on ``to_tsvector('meldpunt_search', …)``: the configuration is a copy
  of 'simple' (no stemming and no stop words, as messages mix Dutch, French and English) that
  strips accents with the ``unaccent`` extension when the server has it.

Existing rows are indexed here (FTS5 'rebuild'; the GIN indexes are built over the table).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEXES = (
    ("ix_tickets_created_at", ["created_at", "id"]),
    ("ix_tickets_updated_at", ["updated_at", "id"]),
    ("ix_tickets_department_updated_at", ["department", "updated_at"]),
    ("ix_tickets_assignee_id", ["assignee_id"]),
    # Covers the counts of open work per view (status, scope, assignee, deadlines): read from
    # the index alone, they stay cheap however many closed tickets the town keeps.
    (
        "ix_tickets_open_work",
        [
            "status",
            "department",
            "assignee_id",
            "first_answered_at",
            "first_answer_due",
            "resolution_due",
        ],
    ),
)

_FTS_TABLES = (
    "CREATE VIRTUAL TABLE ticket_search USING fts5(subject, content='tickets', "
    "content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
    "CREATE VIRTUAL TABLE message_search USING fts5(text, content='messages', "
    "content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
)

# An external-content FTS5 index forgets a row by being told its old text ('delete').
_TRIGGERS = (
    """CREATE TRIGGER ticket_search_insert AFTER INSERT ON tickets BEGIN
        INSERT INTO ticket_search (rowid, subject) VALUES (new.id, new.subject);
    END""",
    """CREATE TRIGGER ticket_search_delete AFTER DELETE ON tickets BEGIN
        INSERT INTO ticket_search (ticket_search, rowid, subject)
        VALUES ('delete', old.id, old.subject);
    END""",
    """CREATE TRIGGER ticket_search_update AFTER UPDATE OF subject ON tickets BEGIN
        INSERT INTO ticket_search (ticket_search, rowid, subject)
        VALUES ('delete', old.id, old.subject);
        INSERT INTO ticket_search (rowid, subject) VALUES (new.id, new.subject);
    END""",
    """CREATE TRIGGER message_search_insert AFTER INSERT ON messages BEGIN
        INSERT INTO message_search (rowid, text) VALUES (new.id, new.text);
    END""",
    """CREATE TRIGGER message_search_delete AFTER DELETE ON messages BEGIN
        INSERT INTO message_search (message_search, rowid, text)
        VALUES ('delete', old.id, old.text);
    END""",
    """CREATE TRIGGER message_search_update AFTER UPDATE OF text ON messages BEGIN
        INSERT INTO message_search (message_search, rowid, text)
        VALUES ('delete', old.id, old.text);
        INSERT INTO message_search (rowid, text) VALUES (new.id, new.text);
    END""",
)

_TOKENS_WITH_LETTERS = "word, hword, hword_part, numword, numhword, hword_numpart"


def upgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        for name, columns in _INDEXES:
            batch_op.create_index(name, columns, unique=False)
    if op.get_bind().dialect.name == "sqlite":
        for statement in (*_FTS_TABLES, *_TRIGGERS):
            op.execute(statement)
        op.execute("INSERT INTO ticket_search (ticket_search) VALUES ('rebuild')")
        op.execute("INSERT INTO message_search (message_search) VALUES ('rebuild')")
    else:
        _postgresql_search()


def _postgresql_search() -> None:
    bind = op.get_bind()
    op.execute("CREATE TEXT SEARCH CONFIGURATION meldpunt_search (COPY = simple)")
    available = bind.scalar(
        sa.text("SELECT count(*) FROM pg_available_extensions WHERE name = 'unaccent'")
    )
    if available:
        # unaccent is a trusted extension (PostgreSQL 13+): a database owner may create it.
        # Should it still be refused, the search works without accent folding.
        savepoint = bind.begin_nested()
        try:
            bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS unaccent"))
        except sa.exc.DBAPIError:
            savepoint.rollback()
        else:
            savepoint.commit()
            op.execute(
                "ALTER TEXT SEARCH CONFIGURATION meldpunt_search "
                f"ALTER MAPPING FOR {_TOKENS_WITH_LETTERS} WITH unaccent, simple"
            )
    op.execute(
        "CREATE INDEX ix_tickets_subject_search ON tickets "
        "USING gin (to_tsvector('meldpunt_search'::regconfig, subject))"
    )
    op.execute(
        "CREATE INDEX ix_messages_text_search ON messages "
        "USING gin (to_tsvector('meldpunt_search'::regconfig, text))"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in (
            "ticket_search_insert", "ticket_search_delete", "ticket_search_update",
            "message_search_insert", "message_search_delete", "message_search_update",
        ):  # fmt: skip
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS ticket_search")
        op.execute("DROP TABLE IF EXISTS message_search")
    else:
        op.execute("DROP INDEX IF EXISTS ix_messages_text_search")
        op.execute("DROP INDEX IF EXISTS ix_tickets_subject_search")
        # The unaccent extension stays: something else may use it.
        op.execute("DROP TEXT SEARCH CONFIGURATION IF EXISTS meldpunt_search")
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        for name, _columns in reversed(_INDEXES):
            batch_op.drop_index(name)
