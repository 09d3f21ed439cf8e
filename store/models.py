"""Database tables. SQLModel classes for the inbox and API; ingest writes them through Core.

Timestamps are stored as timezone-aware UTC. Enum-valued columns hold the enum's string value so
rows stay readable with plain SQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import JSON, Column, Field, SQLModel

# Stable constraint names make Alembic migrations reproducible on SQLite and PostgreSQL alike.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite would otherwise hand back naive values)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Contact(SQLModel, table=True):
    __tablename__ = "contacts"

    id: int | None = Field(default=None, primary_key=True)
    display_name: str | None = Field(default=None, max_length=200)
    language: str | None = Field(default=None, max_length=8)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    # The citizen asked for no more satisfaction questions ("stop" in answer to one).
    no_surveys: bool = Field(
        default=False,
        sa_column=Column(sa.Boolean, nullable=False, default=False, server_default=sa.false()),
    )


class ContactIdentity(SQLModel, table=True):
    """One address of a contact: (kind, value) is unique across all contacts."""

    __tablename__ = "contact_identities"
    __table_args__ = (sa.UniqueConstraint("kind", "value"),)

    id: int | None = Field(default=None, primary_key=True)
    contact_id: int = Field(foreign_key="contacts.id", index=True)
    kind: str = Field(max_length=16)
    value: str = Field(max_length=320)


class Ticket(SQLModel, table=True):
    __tablename__ = "tickets"
    # The inbox's list pages by keyset in creation or activity order, counts open work per view
    # and asks for the latest change per department every few seconds (migration 0006).
    __table_args__ = (
        sa.Index("ix_tickets_created_at", "created_at", "id"),
        sa.Index("ix_tickets_updated_at", "updated_at", "id"),
        sa.Index("ix_tickets_department_updated_at", "department", "updated_at"),
        # A department's or a channel's tickets already in the list's order (migration 0013).
        sa.Index("ix_tickets_department_created_at", "department", "created_at", "id"),
        sa.Index("ix_tickets_origin_channel_created_at", "origin_channel", "created_at", "id"),
        # The counts of open work per view, read from the index alone.
        sa.Index(
            "ix_tickets_open_work",
            "status",
            "department",
            "assignee_id",
            "first_answered_at",
            "first_answer_due",
            "resolution_due",
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    reference: str = Field(max_length=32, unique=True)
    kind: str = Field(max_length=16, index=True)
    status: str = Field(max_length=16, index=True)
    department: str = Field(max_length=64)
    assignee_id: int | None = Field(default=None, foreign_key="users.id", index=True)
    priority: str = Field(max_length=16, default="normal")
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    origin_channel: str = Field(max_length=16)
    contact_id: int = Field(foreign_key="contacts.id", index=True)
    reply_channel: str | None = Field(default=None, max_length=16)
    reply_address: str | None = Field(default=None, max_length=320)
    subject: str | None = Field(default=None, max_length=300)
    language: str | None = Field(default=None, max_length=8)
    location_lat: float | None = None
    location_lon: float | None = None
    location_address: str | None = Field(default=None, max_length=300)
    conversation: str | None = Field(default=None, max_length=200, index=True)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    resolved_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    # Deadlines (ingest.followup): the policy that set them, when the first answer and the
    # resolution are due (moved on by the time the ticket waited for the citizen), and when the
    # first answer went out. ``paused_since`` is set while the ticket is pending; ``pauses``
    # holds the finished waits as [start, end] ISO pairs.
    deadline_policy: str | None = Field(default=None, max_length=64)
    first_answer_due: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True, index=True)
    )
    resolution_due: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True, index=True)
    )
    first_answered_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    paused_since: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    pauses: list[list[str]] = Field(
        default_factory=list,
        sa_column=Column(JSON, nullable=False, default=[], server_default="[]"),
    )
    # Set when a deadline passed unmet (the lead was told) or a citizen gave a low score.
    escalated_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    # A new ticket opened by a message on a ticket that was closed (or resolved too long ago).
    follows_id: int | None = Field(default=None, foreign_key="tickets.id")
    # The satisfaction question: ``asked`` (sent), ``answered``, or None (never asked).
    survey_state: str | None = Field(default=None, max_length=16)
    survey_sent_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    satisfaction: int | None = None
    satisfaction_comment: str | None = Field(default=None, sa_column=Column(sa.Text, nullable=True))


class Timer(SQLModel, table=True):
    """Work due on a ticket at a moment: a deadline warning, an escalation, a survey, a close.

    One row per (ticket, kind): rescheduling moves ``due_at``. Workers claim due rows with
    ``FOR UPDATE SKIP LOCKED`` and do the work in the same transaction, so a timer runs once
    however many processes look, and survives restarts.
    """

    __tablename__ = "timers"
    __table_args__ = (sa.UniqueConstraint("ticket_id", "kind"),)

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="tickets.id", index=True)
    kind: str = Field(max_length=32)
    due_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
    # pending, done or cancelled.
    state: str = Field(max_length=16, index=True)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    done_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    # What the worker did, or why it did nothing (the ticket was answered meanwhile).
    outcome: str | None = Field(default=None, sa_column=Column(sa.Text, nullable=True))
    # Failed runs so far; each failure moves due_at on with a growing delay.
    attempts: int = Field(
        default=0, sa_column=Column(sa.Integer, nullable=False, default=0, server_default="0")
    )


class Message(SQLModel, table=True):
    """A message on a ticket: inbound, outbound or an internal note.

    ``external_id`` is the provider's id (inbound) or the id the provider gave our outbound
    message; it is unique per channel, which is what drops redelivered webhooks.
    """

    __tablename__ = "messages"
    __table_args__ = (sa.UniqueConstraint("channel", "external_id"),)

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="tickets.id", index=True)
    direction: str = Field(max_length=8)
    channel: str = Field(max_length=16)
    external_id: str | None = Field(default=None, max_length=255)
    author_user_id: int | None = Field(default=None, foreign_key="users.id")
    sender: str | None = Field(default=None, max_length=320)
    subject: str | None = Field(default=None, max_length=300)
    text: str = Field(sa_column=Column(sa.Text, nullable=False))
    html: str | None = Field(default=None, sa_column=Column(sa.Text, nullable=True))
    # The whole text as received when ``text`` is a shortened form (an e-mail without the quoted
    # earlier mail and the signature): staff read ``text`` first and can open this.
    full_text: str | None = Field(default=None, sa_column=Column(sa.Text, nullable=True))
    delivery_status: str = Field(max_length=16)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class AttachmentRow(SQLModel, table=True):
    """File metadata; the bytes live on disk under their SHA-256."""

    __tablename__ = "attachments"

    id: int | None = Field(default=None, primary_key=True)
    message_id: int = Field(foreign_key="messages.id", index=True)
    filename: str = Field(max_length=255)
    content_type: str = Field(max_length=127)
    size: int
    sha256: str | None = Field(default=None, max_length=64, index=True)
    removed_reason: str | None = Field(default=None, max_length=255)
    # The e-mail part's Content-ID, which the mail's HTML names as "cid:…" to show it inline.
    content_id: str | None = Field(default=None, max_length=255)


class TicketEvent(SQLModel, table=True):
    """The history of a ticket: created, routed (with rule ids), transferred, status, replied."""

    __tablename__ = "ticket_events"

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="tickets.id", index=True)
    type: str = Field(max_length=32)
    actor_user_id: int | None = Field(default=None, foreign_key="users.id")
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class ContactEvent(SQLModel, table=True):
    """Something that happened with a citizen outside any ticket, such as a call answered.

    ``external_id`` is unique per channel, so a redelivered callback records it once;
    ``ticket_id`` is set once staff turned the event into a ticket.
    """

    __tablename__ = "contact_events"
    __table_args__ = (sa.UniqueConstraint("channel", "external_id"),)

    id: int | None = Field(default=None, primary_key=True)
    contact_id: int = Field(foreign_key="contacts.id", index=True)
    channel: str = Field(max_length=16)
    type: str = Field(max_length=32)
    external_id: str = Field(max_length=255)
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    ticket_id: int | None = Field(default=None, foreign_key="tickets.id")


class JournalEntry(SQLModel, table=True):
    """Every raw delivery as received, written before the provider gets its answer.

    ``state`` is ``processed``, ``duplicate``, ``quarantined`` (could not be processed; ``error``
    says why), ``replayed`` (a quarantined entry processed again), ``ignored`` (not a citizen
    writing: meldpunt's own mail come back, a mail loop; ``error`` says why) or ``delivery``
    (a provider's report on an outbound message, such as a bounce).
    """

    __tablename__ = "journal"

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=16)
    external_id: str = Field(max_length=255, index=True)
    received_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    content_type: str = Field(max_length=127)
    payload: bytes = Field(sa_column=Column(sa.LargeBinary, nullable=False))
    envelope: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    state: str = Field(max_length=16, index=True)
    error: str | None = Field(default=None, sa_column=Column(sa.Text, nullable=True))
    message_id: int | None = Field(default=None, foreign_key="messages.id")


class OutboxRow(SQLModel, table=True):
    """One message waiting to be sent, or sent. The dispatcher claims rows by ``next_attempt_at``.

    ``reason`` tells staff why a row is still pending or why it failed.
    """

    __tablename__ = "outbox"

    id: int | None = Field(default=None, primary_key=True)
    message_id: int = Field(foreign_key="messages.id", index=True)
    ticket_id: int = Field(foreign_key="tickets.id", index=True)
    purpose: str = Field(max_length=32)
    channel: str = Field(max_length=16)
    recipient: str | None = Field(default=None, max_length=320)
    subject: str | None = Field(default=None, max_length=300)
    body: str = Field(sa_column=Column(sa.Text, nullable=False))
    state: str = Field(max_length=16, index=True)
    reason: str | None = Field(default=None, sa_column=Column(sa.Text, nullable=True))
    attempts: int = 0
    next_attempt_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
    claimed_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    # Set (and committed) just before the provider is called for this row; only a row with it
    # set can have gone out when its worker died (``ingest.dispatch``).
    attempt_started_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    provider_id: str | None = Field(default=None, max_length=255)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    sent_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    # Failed look-ups at the provider for an ``uncertain`` row (``ingest.dispatch``): bounded,
    # then staff decide. Back to 0 whenever the row becomes uncertain again.
    lookups: int = Field(
        default=0, sa_column=Column(sa.Integer, nullable=False, default=0, server_default="0")
    )
    # Answers the citizen can tap (a survey's 1-5) on channels with buttons; the text of the
    # chosen button comes back as their message. Null: none.
    choices: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320, unique=True)
    name: str | None = Field(default=None, max_length=200)
    role: str = Field(max_length=16)
    departments: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    password_hash: str | None = Field(default=None, max_length=255)
    active: bool = True
    # Failed web logins in a row, and until when the account is locked after too many.
    failed_logins: int = Field(
        default=0, sa_column=Column(sa.Integer, nullable=False, default=0, server_default="0")
    )
    locked_until: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class WebSession(SQLModel, table=True):
    """A staff member signed in to the web inbox. The cookie holds a random token; only its
    SHA-256 is stored, so a copy of the database opens no session. ``csrf_token`` goes into
    every form of the session and must come back with each POST."""

    __tablename__ = "web_sessions"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    csrf_token: str = Field(max_length=64)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    last_seen_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))


class ApiToken(SQLModel, table=True):
    """A bearer token; only its SHA-256 is stored, the token itself is shown once."""

    __tablename__ = "api_tokens"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    token_hash: str = Field(max_length=64, unique=True)
    name: str | None = Field(default=None, max_length=100)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    last_used_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    revoked: bool = False


class ConnectorCursor(SQLModel, table=True):
    """Where a connector left off, e.g. an IMAP mailbox's UIDVALIDITY and last imported UID."""

    __tablename__ = "connector_cursors"

    key: str = Field(primary_key=True, max_length=200)
    value: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class Counter(SQLModel, table=True):
    """Named counters, e.g. ticket references on SQLite; allocated in blocks per batch."""

    __tablename__ = "counters"

    name: str = Field(primary_key=True, max_length=32)
    value: int = 0


# Ticket references on PostgreSQL (migration 0009): nextval never waits for another transaction,
# so the intake batches of several processes do not queue behind one counter row. A batch that
# rolls back does not give its numbers back: a reference number may be skipped.
REFERENCE_SEQUENCE = sa.Sequence("ticket_reference_seq")


class Lease(SQLModel, table=True):
    """Which process may run a background job that must run in one place (``store/leases.py``)."""

    __tablename__ = "leases"

    key: str = Field(primary_key=True, max_length=200)
    holder: str = Field(max_length=200)
    acquired_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class ChatPresence(SQLModel, table=True):
    """A web chat visitor with a socket open in one process, or just gone (``store/presence.py``).

    The process that holds the socket renews ``expires_at`` on a short heartbeat; when the
    visitor's last socket there closes, ``connected`` turns false and the row lasts the grace of
    a page load. A row past ``expires_at`` (its process died) counts for nothing.
    """

    __tablename__ = "chat_presence"

    visitor: str = Field(primary_key=True, max_length=64)
    holder: str = Field(primary_key=True, max_length=200)
    connected: bool
    expires_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))


# Full-text search (migration 0006) lives outside the models: SQLite's FTS5 tables (with their
# shadow tables, ticket_search_data and the like) and PostgreSQL's expression indexes. Schema
# comparisons (autogenerate, the migration tests) leave them alone.
SEARCH_OBJECTS = (
    "ticket_search",
    "message_search",
    "ix_tickets_subject_search",
    "ix_messages_text_search",
)


def is_search_object(name: str | None) -> bool:
    """Whether a table or index name is one of ``SEARCH_OBJECTS`` or an FTS5 shadow table."""
    return name is not None and any(
        name == wanted or name.startswith(f"{wanted}_") for wanted in SEARCH_OBJECTS
    )


def table_of(model: type[SQLModel]) -> sa.Table:
    """The Core table of a model, for batched statements (SQLModel does not type ``__table__``)."""
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, sa.Table)
    return table
