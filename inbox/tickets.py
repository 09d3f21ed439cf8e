"""What staff do with tickets: list, read, reply, note, transfer, change status; and the outbox.

Every function takes an open session and the acting ``Staff`` and enforces department scope: a
ticket an agent may not see is reported as not found, so its existence does not leak.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import unicodedata
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import nh3
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from inbox.auth import Staff
from inbox.errors import (
    BadRequestError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    UnprocessableError,
)
from inbox.schemas import (
    AttachmentOut,
    CalledBackRequest,
    ContactDetail,
    ContactIdentityOut,
    ContactSummary,
    EventOut,
    Location,
    MessageOut,
    MessageOutbox,
    NoteRequest,
    OutboxItem,
    OutboxPage,
    OutboxState,
    ReplyRequest,
    StaffRef,
    StatusRequest,
    TicketDeadlines,
    TicketDetail,
    TicketPage,
    TicketSummary,
    TransferRequest,
)
from ingest.files import AttachmentStore
from ingest.followup import FollowUp, clock_start, reopen_values, reschedule, resume_values
from ingest.model import (
    REPLY_IDENTITY,
    Channel,
    DeliveryStatus,
    Direction,
    IdentityKind,
    Kind,
    Priority,
    TicketStatus,
)
from ingest.pipeline import HTML_URL_SCHEMES
from ingest.sms import sms_segments
from ingest.templates import Notice
from store.models import (
    AttachmentRow,
    Contact,
    ContactIdentity,
    Message,
    OutboxRow,
    Ticket,
    TicketEvent,
    User,
    UTCDateTime,
    utcnow,
)
from store.outbox import OutboundDraft, queue_outbound

NEW, OPEN, PENDING, RESOLVED, CLOSED = (
    TicketStatus.NEW,
    TicketStatus.OPEN,
    TicketStatus.PENDING,
    TicketStatus.RESOLVED,
    TicketStatus.CLOSED,
)

# Allowed status changes. Nothing goes back to "new" (it means nobody has looked yet); "closed" is
# final except that an admin or operator may reopen it.
TRANSITIONS: Mapping[TicketStatus, frozenset[TicketStatus]] = {
    NEW: frozenset({OPEN, PENDING, RESOLVED, CLOSED}),
    OPEN: frozenset({PENDING, RESOLVED, CLOSED}),
    PENDING: frozenset({OPEN, RESOLVED, CLOSED}),
    RESOLVED: frozenset({OPEN, CLOSED}),
    CLOSED: frozenset({OPEN}),
}
REOPEN_FROM_CLOSED = "only an admin or operator may reopen a closed ticket"

# Which identity of a contact a reply on each channel goes to. Channels missing here (voice, web
# form, app, desk) cannot carry a staff reply on their own.

# A person's answer, also the one that resolves a ticket (never sent as "automatic").
REPLY_PURPOSE = "reply"
# Notes are written in the inbox, so they are recorded on the desk channel and never sent.
NOTE_CHANNEL = Channel.DESK


def _in_order(statuses: Collection[TicketStatus]) -> list[TicketStatus]:
    """Statuses in lifecycle order (new … closed), which reads better than alphabetical."""
    return [s for s in TicketStatus if s in statuses]


def describe_transitions() -> str:
    """The transition table in words, for the API documentation."""
    lines = [
        f"- {source}: {', '.join(_in_order(targets))}" for source, targets in TRANSITIONS.items()
    ]
    return (
        "Allowed status changes:\n"
        + "\n".join(lines)
        + f"\n\nClosed is final: {REOPEN_FROM_CLOSED}. Resolving sets resolved_at (closing sets "
        "it too if the ticket was never resolved); reopening clears it."
    )


# Cursors

# Row ids are 32-bit integers on PostgreSQL: a larger id cannot exist, and binding one to a query
# fails there instead of matching nothing.
MAX_ROW_ID = 2**31 - 1


def encode_cursor(*parts: str) -> str:
    """An opaque page cursor; clients must pass it back unchanged."""
    return base64.urlsafe_b64encode("|".join(parts).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, count: int) -> list[str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        parts = base64.urlsafe_b64decode(padded.encode("ascii")).decode().split("|")
    except (binascii.Error, UnicodeError, ValueError):
        parts = []
    if len(parts) != count:
        raise _invalid_cursor()
    return parts


def decode_id_cursor(cursor: str) -> int:
    """The id in the cursor of a list ordered by id alone (the outbox, the quarantine)."""
    [ident] = decode_cursor(cursor, 1)
    try:
        value = int(ident)
    except ValueError:
        raise _invalid_cursor() from None
    if not 0 < value <= MAX_ROW_ID:
        raise _invalid_cursor()
    return value


def _invalid_cursor() -> BadRequestError:
    return BadRequestError(
        "invalid_parameter", "'cursor' is not a cursor this API handed out", {"parameter": "cursor"}
    )


# Listing

# The orders of the ticket list; the page cursor carries the sort and its keyset.
SORTS = ("newest", "oldest", "due", "activity")
# The inbox's views; "all" only for staff who see every department.
VIEWS = ("mine", "departments", "unassigned", "overdue", "all")
# Work still to do: what the views count.
OPEN_STATUSES = (NEW.value, OPEN.value, PENDING.value)
# A search keeps at most this many words; all of them must be in the subject or in one message.
MAX_SEARCH_WORDS = 8
# Shorter words match whole words only: as a prefix they would match much of the index.
MIN_PREFIX_LENGTH = 3
_WORD = re.compile(r"[^\W_]+")


@dataclass(frozen=True, slots=True)
class TicketFilter:
    """Filters of the ticket list; an empty collection means no filter."""

    statuses: Collection[str] = ()
    departments: Collection[str] = ()
    kinds: Collection[str] = ()
    channels: Collection[str] = ()
    # Words that must all be in the subject or all in one message (notes included).
    search: str | None = None
    # True: only tickets past a deadline; False: only those that are not; None: all.
    overdue: bool | None = None
    # Assigned to one of these users, or (``unassigned``) to nobody; both empty: anyone.
    assignees: Collection[int] = ()
    unassigned: bool = False
    # Every one of these tags.
    tags: Collection[str] = ()
    # Created at or after ``created_from`` and before ``created_before``.
    created_from: datetime | None = None
    created_before: datetime | None = None
    # One of ``VIEWS``, or None.
    view: str | None = None


def search_words(text: str) -> list[str]:
    """The words of a search as staff typed it: letters and digits only, so quotes, ``*``,
    ``-``, ``OR`` or ``NEAR`` are words like any other (or nothing), never search syntax."""
    words: list[str] = []
    # Composed first: "e" and a combining accent are one letter, as the indexes read them.
    for word in _WORD.findall(unicodedata.normalize("NFC", text).lower()):
        if word not in words:
            words.append(word)
    return words[:MAX_SEARCH_WORDS]


# The ids of the tickets with the search's words in their subject or one of their messages,
# through the full-text indexes of migration 0006. On PostgreSQL the expressions are exactly
# those of the GIN indexes (text search configuration ``meldpunt_search``: a copy of 'simple',
# no stemming and no stop words as messages mix Dutch, French and English, that strips
# accents), so the planner uses them.
_MATCHING = {
    "sqlite": "SELECT rowid AS id FROM ticket_search WHERE ticket_search MATCH :term "
    "UNION SELECT messages.ticket_id FROM message_search "
    "JOIN messages ON messages.id = message_search.rowid WHERE message_search MATCH :term",
    "postgresql": "SELECT id FROM tickets WHERE to_tsvector('meldpunt_search'::regconfig, subject) "
    "@@ to_tsquery('meldpunt_search'::regconfig, :term) "
    "UNION SELECT ticket_id FROM messages WHERE to_tsvector('meldpunt_search'::regconfig, text) "
    "@@ to_tsquery('meldpunt_search'::regconfig, :term)",
}
# A term in more messages than this is checked ticket by ticket while walking the list in its
# order, which stops after a page. The set of all its tickets would cost a lookup per message
# on SQLite (a tenth of a second per hundred thousand), and on PostgreSQL a scan of the whole
# messages table that computes every text's vector again (seconds).
COMMON_TERM = 5000
# PostgreSQL: a rarer term's tickets are found first and the list is read by their ids. Should
# that set still be larger than this (a word in many subjects, or the estimate far off), the
# walk is used after all.
MAX_MATCHED = 4 * COMMON_TERM
# SQLite counts, up to a cap, the messages holding the term; FTS5 stops at the cap for a plain
# term (microseconds), but a prefix term ("straat*") merges the lists of every word it starts
# (straatlamp, straatkant, ...) before the first row, about 20 ms for a common one. So the plain
# term is counted first: a common word is known as common without the merge.
_COMMON_PROBE = (
    "SELECT count(*) FROM (SELECT rowid FROM message_search "
    "WHERE message_search MATCH :term LIMIT :cap)"
)
# PostgreSQL is asked for its estimate instead: a count with a LIMIT can be planned as a
# sequential scan that computes every text's vector until it has enough (half a second for a
# common word). The statistics ANALYZE keeps on the GIN index's expression know how often each
# word occurs, prefixes included.
_ESTIMATE = (
    "EXPLAIN (FORMAT JSON) SELECT 1 FROM messages "
    "WHERE to_tsvector('meldpunt_search'::regconfig, text) "
    "@@ to_tsquery('meldpunt_search'::regconfig, :term)"
)
# The unary "+" keeps SQLite from driving the query by the term's lists: it walks the tickets
# in the list's order and checks each against the term's rowids, held once in memory.
# PostgreSQL checks the few texts of each ticket it walks (a scalar subquery: an EXISTS would be
# planned as one hashed set of every matching message, found by reading the whole table).
_COMMON_MATCH = {
    "sqlite": "(+tickets.id IN (SELECT rowid FROM ticket_search WHERE ticket_search MATCH :term) "
    "OR EXISTS (SELECT 1 FROM messages WHERE messages.ticket_id = tickets.id AND +messages.id IN "
    "(SELECT rowid FROM message_search WHERE message_search MATCH :term)))",
    "postgresql": "(to_tsvector('meldpunt_search'::regconfig, tickets.subject) "
    "@@ to_tsquery('meldpunt_search'::regconfig, :term) "
    "OR (SELECT bool_or(to_tsvector('meldpunt_search'::regconfig, messages.text) "
    "@@ to_tsquery('meldpunt_search'::regconfig, :term)) "
    "FROM messages WHERE messages.ticket_id = tickets.id))",
}
# SQLite, common term: that set of rowids is most of the query's cost (220,000 of them, 40 ms,
# for a word in one message in five). A page is nearly always found among the list's first few
# hundred tickets, and their messages all have ids from the oldest one's first message on; so
# those tickets (``search_window``) are searched first, with the set cut to that rowid range,
# which FTS5 reads directly. Only a page not filled there is searched over the whole list.
SEARCH_WINDOW_PAGES = 10
_WINDOWED_MATCH = (
    "(+tickets.id IN (SELECT rowid FROM ticket_search WHERE ticket_search MATCH :term) "
    "OR EXISTS (SELECT 1 FROM messages WHERE messages.ticket_id = tickets.id AND +messages.id IN "
    "(SELECT rowid FROM message_search WHERE message_search MATCH :term AND rowid >= "
    "(SELECT min(messages.id) FROM messages "
    "WHERE messages.ticket_id IN (SELECT id FROM search_window)))))"
)
_HAS_TAG = {
    "sqlite": "EXISTS (SELECT 1 FROM json_each(tickets.tags) WHERE json_each.value = :tag)",
    "postgresql": "CAST(tickets.tags AS jsonb) @> jsonb_build_array(CAST(:tag AS text))",
}


def _search_term(dialect: str, words: Sequence[str], *, prefixes: bool = True) -> str:
    """The words as the engine's query: each one a plain term (a word of
    ``MIN_PREFIX_LENGTH`` letters or more also as the start of a longer one, unless
    ``prefixes`` is false), all required."""
    terms = []
    for word in words:
        prefix = prefixes and len(word) >= MIN_PREFIX_LENGTH
        if dialect == "sqlite":
            # Letters and digits only, quoted: FTS5 reads it as a plain term, never syntax.
            terms.append(f'"{word}"' + ("*" if prefix else ""))
        else:
            terms.append(f"'{word}'" + (":*" if prefix else ""))
    return " ".join(terms) if dialect == "sqlite" else " & ".join(terms)


async def _is_common(session: AsyncSession, dialect: str, words: Sequence[str]) -> bool:
    """Whether more than ``COMMON_TERM`` messages hold the words (PostgreSQL: are estimated to)."""
    if dialect == "postgresql":
        estimate = sa.text(_ESTIMATE).bindparams(term=_search_term(dialect, words))
        plan = await session.scalar(estimate)
        found = json.loads(plan) if isinstance(plan, str) else plan
        return bool(found[0]["Plan"]["Plan Rows"] > COMMON_TERM)
    terms = dict.fromkeys(
        (_search_term(dialect, words, prefixes=False), _search_term(dialect, words))
    )
    for term in terms:
        probe = sa.text(_COMMON_PROBE).bindparams(term=term, cap=COMMON_TERM + 1)
        if (await session.scalar(probe) or 0) > COMMON_TERM:
            return True
    return False


@dataclass(frozen=True, slots=True)
class _Search:
    clause: sa.ColumnElement[bool]
    # The engine's term when the list is walked and each ticket checked (a common term).
    walked_term: str | None = None


async def _search(session: AsyncSession, dialect: str, words: Sequence[str]) -> _Search:
    """Tickets whose subject, or one of whose messages, holds every word.

    Every word in one document lets the engine intersect the words' lists inside the index;
    across a ticket's documents it would need the set of tickets of each word, which for a
    common word ("de", "straat") is tens of thousands of rows. Two plans: a common term is
    checked ticket by ticket while the list is walked in its order (a page is found early); a
    rarer one's tickets are found first, and the list reads only those (by primary key) and
    sorts them.
    """
    if not words:
        # Nothing searchable (only punctuation): nothing can match.
        return _Search(sa.false())
    term = _search_term(dialect, words)
    if not await _is_common(session, dialect, words):
        if dialect == "sqlite":
            # Planned as it reads: the matches first (a list SQLite keeps), then the tickets
            # by rowid. Fetching the ids into Python first only added the round trip.
            matching = sa.text(_MATCHING[dialect]).bindparams(term=term)
            return _Search(col(Ticket.id).in_(matching.columns(sa.column("id", sa.Integer))))
        # PostgreSQL joins a set found inside the statement by hashing it against a scan of
        # every ticket (its estimate for a prefix query on the subject is a flat 2 %); given
        # the ids as a value, it reads those tickets by key.
        matching = sa.text(f"SELECT id FROM ({_MATCHING[dialect]}) AS matching LIMIT :cap")  # noqa: S608
        found = await session.scalars(matching.bindparams(term=term, cap=MAX_MATCHED + 1))
        ids = sorted(set(found))
        if len(ids) <= MAX_MATCHED:
            return _Search(_any_id(ids))
    clause = sa.text(_COMMON_MATCH[dialect]).bindparams(term=term).self_group()
    return _Search(clause, term)  # type: ignore[arg-type]


def _any_id(ids: Sequence[int]) -> sa.ColumnElement[bool]:
    """PostgreSQL: ``tickets.id`` is one of ``ids``, bound as one array: a list of thousands of
    bound values would cost more to build and parse than the query takes."""
    if not ids:
        return sa.false()
    array = sa.bindparam("matched_ids", list(ids), type_=postgresql.ARRAY(sa.Integer))
    return col(Ticket.id) == sa.any_(array)


def _has_tag(dialect: str, tag: str) -> sa.ColumnElement[bool]:
    clause = sa.text(_HAS_TAG[dialect]).bindparams(sa.bindparam("tag", tag, unique=True))
    return clause.self_group()  # type: ignore[return-value]


def _view_clause(
    view: str, staff: Staff, now: datetime, dialect: str = "", sort: str = ""
) -> sa.ColumnElement[bool]:
    if view == "mine":
        return col(Ticket.assignee_id) == staff.id
    if view == "departments":
        if not staff.departments:
            return sa.false()
        return _one_of(dialect, sort, "department", staff.departments)
    if view == "unassigned":
        return _unassigned(dialect, sort)
    if view == "overdue":
        return overdue_clause(now, dialect, sort)
    return sa.true()


def available_views(staff: Staff) -> list[str]:
    """The views a staff member gets: "my departments" only with departments, "all" only for
    those who see all."""
    return [
        view
        for view in VIEWS
        if (view != "all" or staff.sees_all) and (view != "departments" or staff.departments)
    ]


def _scope(staff: Staff, dialect: str = "", sort: str = "") -> sa.ColumnElement[bool]:
    if staff.sees_all:
        return sa.true()
    return _one_of(dialect, sort, "department", staff.departments)


# SQLite plans without statistics, so a filter column with an index of its own wins over the
# index of the list's order: it then reads every ticket with that status or in those
# departments and sorts them all for one page (0.1 s for a quarter of 200,000 tickets). A unary
# "+" keeps the column out of the plan; SQLite walks the order's index and filters as it goes,
# which stops after a page (and reads at most the whole index when nothing matches: 0.1 s at
# 200,000). Department and channel have indexes in creation order (migration 0013; by
# department also in activity order), which are better still for one value. For the "due"
# order no index gives the order, so the filter's index helps.
_WALKED_SORTS = ("newest", "oldest", "activity")
_ORDERED_BY_INDEX = {
    "department": ("newest", "oldest", "activity"),
    "origin_channel": ("newest", "oldest"),
}


def _one_of(dialect: str, sort: str, name: str, values: Collection[str]) -> sa.ColumnElement[bool]:
    """The ticket's column ``name`` is one of ``values``; on SQLite kept out of the plan where
    walking the order's index is better (``_WALKED_SORTS``)."""
    chosen = sorted(values)
    column = col(getattr(Ticket, name))
    if dialect != "sqlite" or sort not in _WALKED_SORTS:
        return column.in_(chosen)
    if len(chosen) == 1 and sort in _ORDERED_BY_INDEX.get(name, ()):
        return column.in_(chosen)
    return sa.literal_column(f"+tickets.{name}", sa.String).in_(chosen)


def _unassigned(dialect: str, sort: str) -> sa.ColumnElement[bool]:
    """Assigned to nobody: most tickets of a town may be, so on SQLite too the order's index is
    walked rather than every unassigned ticket sorted."""
    if dialect == "sqlite" and sort in _WALKED_SORTS:
        return sa.literal_column("+tickets.assignee_id", sa.Integer).is_(None)
    return col(Ticket.assignee_id).is_(None)


def _next_due_column() -> sa.ColumnElement[datetime]:
    """The ticket's next deadline: the first answer's while unanswered, else the resolution's."""
    due = sa.func.coalesce(
        sa.case((col(Ticket.first_answered_at).is_(None), col(Ticket.first_answer_due))),
        col(Ticket.resolution_due),
    )
    return sa.type_coerce(due, UTCDateTime())


def next_due(ticket: Ticket) -> datetime | None:
    """What ``_next_due_column`` computes, for one loaded ticket."""
    if ticket.first_answered_at is None and ticket.first_answer_due is not None:
        return ticket.first_answer_due
    return ticket.resolution_due


def _sort_key(ticket: Ticket, sort: str) -> datetime | None:
    if sort == "due":
        return next_due(ticket)
    return ticket.updated_at if sort == "activity" else ticket.created_at


def _after(sort: str, cursor: str) -> sa.ColumnElement[bool]:
    """Rows after the cursor's in the sort's order (a keyset: the sort key, then the id)."""
    name, stamp, ident = decode_cursor(cursor, 3)
    try:
        after_at = datetime.fromisoformat(stamp) if stamp else None
        after_id = int(ident)
        # A made-up moment at the calendar's edge would overflow when moved to UTC.
        if after_at is not None and after_at.tzinfo is not None:
            after_at = after_at.astimezone(UTC)
    except (ValueError, OverflowError):
        raise _invalid_cursor() from None
    if name != sort or (after_at is None and sort != "due"):
        raise _invalid_cursor()
    if after_at is not None and after_at.tzinfo is None:
        raise _invalid_cursor()
    if not 0 < after_id <= MAX_ROW_ID:
        raise _invalid_cursor()
    ticket_id = col(Ticket.id)
    if sort == "due":
        due = _next_due_column()
        if after_at is None:
            return sa.and_(due.is_(None), ticket_id > after_id)
        return sa.or_(due > after_at, sa.and_(due == after_at, ticket_id > after_id), due.is_(None))
    key = col(Ticket.updated_at) if sort == "activity" else col(Ticket.created_at)
    if sort == "oldest":
        return sa.or_(key > after_at, sa.and_(key == after_at, ticket_id > after_id))
    return sa.or_(key < after_at, sa.and_(key == after_at, ticket_id < after_id))


def _order(sort: str) -> list[sa.ColumnElement[Any]]:
    ticket_id = col(Ticket.id)
    if sort == "due":
        return [_next_due_column().asc().nulls_last(), ticket_id.asc()]
    if sort == "oldest":
        return [col(Ticket.created_at).asc(), ticket_id.asc()]
    key = col(Ticket.updated_at) if sort == "activity" else col(Ticket.created_at)
    return [key.desc(), ticket_id.desc()]


async def list_tickets(
    session: AsyncSession,
    staff: Staff,
    departments: Mapping[str, str],
    filters: TicketFilter,
    limit: int,
    cursor: str | None = None,
    sort: str = "newest",
) -> TicketPage:
    """Tickets in the order ``sort`` names (one of ``SORTS``), one page at a time (a keyset on
    the sort key and the id, so pages neither repeat nor skip a ticket)."""
    if sort not in SORTS:
        raise BadRequestError(
            "invalid_parameter", f"unknown sort '{sort}'", {"parameter": "sort", "valid": SORTS}
        )
    dialect = session.get_bind().dialect.name
    now = utcnow()
    query = sa.select(col(Ticket.id)).where(_scope(staff, dialect, sort))
    for name, values in (
        ("status", filters.statuses),
        ("department", filters.departments),
        ("kind", filters.kinds),
        ("origin_channel", filters.channels),
    ):
        if values:
            query = query.where(_one_of(dialect, sort, name, values))
    if filters.view is not None:
        query = query.where(_view_clause(filters.view, staff, now, dialect, sort))
    if filters.overdue is not None:
        late = overdue_clause(now, dialect, sort)
        query = query.where(
            late if filters.overdue else sa.not_(sa.func.coalesce(late, sa.false()))
        )
    if filters.assignees or filters.unassigned:
        assigned: list[sa.ColumnElement[bool]] = [
            col(Ticket.assignee_id).in_(sorted(filters.assignees))
        ]
        if filters.unassigned:
            assigned.append(_unassigned(dialect, sort))
        query = query.where(sa.or_(*assigned))
    for tag in sorted(filters.tags):
        query = query.where(_has_tag(dialect, tag))
    if filters.created_from is not None:
        query = query.where(col(Ticket.created_at) >= filters.created_from)
    if filters.created_before is not None:
        query = query.where(col(Ticket.created_at) < filters.created_before)
    if cursor is not None:
        query = query.where(_after(sort, cursor))
    rows: Sequence[sa.Row[Ticket, Contact]] = ()
    if filters.search is not None:
        search = await _search(session, dialect, search_words(filters.search))
        if search.walked_term is not None and dialect == "sqlite":
            window = (
                query.order_by(*_order(sort))
                .limit(SEARCH_WINDOW_PAGES * (limit + 1))
                .cte("search_window")
            )
            match = sa.text(_WINDOWED_MATCH).bindparams(term=search.walked_term).self_group()
            within = query.where(col(Ticket.id).in_(sa.select(window.c.id)), match)
            rows = await _page(session, within, sort, limit)
        query = query.where(search.clause)
    if len(rows) <= limit:
        rows = await _page(session, query, sort, limit)
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = page[-1][0]
        assert last.id is not None
        key = _sort_key(last, sort)
        next_cursor = encode_cursor(sort, key.isoformat() if key else "", str(last.id))
    return TicketPage(
        items=[_summary(ticket, contact, departments) for ticket, contact in page],
        next_cursor=next_cursor,
    )


async def _page(
    session: AsyncSession, query: sa.Select[int | None], sort: str, limit: int
) -> Sequence[sa.Row[Ticket, Contact]]:
    """The first ``limit + 1`` tickets ``query`` (ticket ids) finds in the sort's order, with
    their contacts.

    The page's ids first, then their rows and contacts: PostgreSQL would otherwise join the
    contact of every ticket a search found (thousands) before keeping a page.
    """
    chosen = query.order_by(*_order(sort)).limit(limit + 1).correlate(None)
    found = await session.execute(
        sa.select(Ticket, Contact)
        .join(Contact, col(Contact.id) == col(Ticket.contact_id))
        .where(col(Ticket.id).in_(chosen))
        .order_by(*_order(sort))
    )
    return found.all()


async def view_counts(session: AsyncSession, staff: Staff) -> dict[str, int]:
    """How many open tickets (new, open or pending) each of the staff member's views holds;
    one query over the open tickets in their scope."""
    now = utcnow()
    views = available_views(staff)
    counts = [sa.func.count().filter(_view_clause(view, staff, now)).label(view) for view in views]
    query = (
        sa.select(*counts)
        .select_from(Ticket)
        .where(col(Ticket.status).in_(OPEN_STATUSES), _scope(staff))
    )
    row = (await session.execute(query)).one()
    return {view: int(row._mapping[view] or 0) for view in views}


async def latest_change(session: AsyncSession, staff: Staff) -> datetime | None:
    """When a ticket the staff member may see last changed (a new ticket, message or action).

    One index lookup per department (on (department, updated_at)), or one for staff who see
    all: cheap enough to ask every few seconds from every open list.
    """
    latest = sa.func.max(col(Ticket.updated_at))
    if staff.sees_all:
        return await session.scalar(sa.select(sa.type_coerce(latest, UTCDateTime())))
    found: list[datetime] = []
    for department in sorted(staff.departments):
        value = await session.scalar(
            sa.select(sa.type_coerce(latest, UTCDateTime())).where(
                col(Ticket.department) == department
            )
        )
        if value is not None:
            found.append(value)
    return max(found, default=None)


def overdue_clause(now: datetime, dialect: str = "", sort: str = "") -> sa.ColumnElement[bool]:
    """Active tickets with a deadline passed and not met (pending ones wait: their clock stops).

    ``dialect`` and ``sort``: those of a list, whose order's index SQLite should walk.
    """
    return sa.and_(
        _one_of(dialect, sort, "status", (NEW.value, OPEN.value)),
        sa.or_(
            sa.and_(col(Ticket.first_answered_at).is_(None), col(Ticket.first_answer_due) < now),
            col(Ticket.resolution_due) < now,
        ),
    )


def _is_overdue(ticket: Ticket, now: datetime) -> bool:
    if ticket.status not in (NEW, OPEN):
        return False
    late_answer = (
        ticket.first_answered_at is None
        and ticket.first_answer_due is not None
        and ticket.first_answer_due < now
    )
    return late_answer or (ticket.resolution_due is not None and ticket.resolution_due < now)


def _summary(ticket: Ticket, contact: Contact, departments: Mapping[str, str]) -> TicketSummary:
    assert contact.id is not None
    return TicketSummary(
        reference=ticket.reference,
        subject=ticket.subject,
        status=TicketStatus(ticket.status),
        kind=Kind(ticket.kind),
        priority=Priority(ticket.priority),
        department=ticket.department,
        department_name=departments.get(ticket.department),
        tags=list(ticket.tags),
        channel=Channel(ticket.origin_channel),
        reply_channel=Channel(ticket.reply_channel) if ticket.reply_channel else None,
        contact=ContactSummary(id=contact.id, name=contact.display_name),
        created_at=ticket.created_at,
        updated_at=ticket.updated_at,
        resolved_at=ticket.resolved_at,
        deadlines=TicketDeadlines(
            policy=ticket.deadline_policy,
            first_answer_due=ticket.first_answer_due,
            first_answered_at=ticket.first_answered_at,
            resolution_due=ticket.resolution_due,
            paused=ticket.status == PENDING,
            overdue=_is_overdue(ticket, utcnow()),
            escalated_at=ticket.escalated_at,
        ),
        satisfaction=ticket.satisfaction,
    )


async def ticket_summary(
    session: AsyncSession, ticket: Ticket, departments: Mapping[str, str]
) -> TicketSummary:
    """The summary of a ticket already loaded (and checked visible), as the API shows it."""
    return _summary(ticket, await session.get_one(Contact, ticket.contact_id), departments)


# One ticket


async def visible_ticket(
    session: AsyncSession, staff: Staff, reference: str, *, for_update: bool = False
) -> Ticket:
    """The ticket with this reference if ``staff`` may see it.

    Raises:
        NotFoundError: no such ticket, or one outside the staff member's departments.
    """
    query = sa.select(Ticket).where(col(Ticket.reference) == reference)
    if for_update:
        # Two staff members acting on one ticket at once must see each other's change.
        query = query.with_for_update()
    ticket = (await session.scalars(query)).first()
    if ticket is None or not staff.can_see(ticket.department):
        raise NotFoundError("not_found", f"no ticket {reference}")
    return ticket


async def _staff_refs(session: AsyncSession, ids: Iterable[int | None]) -> dict[int, StaffRef]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    users = await session.scalars(sa.select(User).where(col(User.id).in_(sorted(wanted))))
    return {u.id: StaffRef(id=u.id, email=u.email, name=u.name) for u in users if u.id is not None}


async def _messages_out(session: AsyncSession, messages: Sequence[Message]) -> list[MessageOut]:
    ids = [m.id for m in messages if m.id is not None]
    attachments: dict[int, list[AttachmentOut]] = {}
    outboxes: dict[int, MessageOutbox] = {}
    if ids:
        for row in await session.scalars(
            sa.select(AttachmentRow)
            .where(col(AttachmentRow.message_id).in_(ids))
            .order_by(col(AttachmentRow.id))
        ):
            assert row.id is not None
            attachments.setdefault(row.message_id, []).append(
                AttachmentOut(
                    id=row.id,
                    filename=row.filename,
                    content_type=row.content_type,
                    size=row.size,
                    sha256=row.sha256,
                    removed_reason=row.removed_reason,
                    content_id=row.content_id,
                )
            )
        # Ordered by id so a later outbox row for the same message (a resend) wins.
        for box in await session.scalars(
            sa.select(OutboxRow)
            .where(col(OutboxRow.message_id).in_(ids))
            .order_by(col(OutboxRow.id))
        ):
            assert box.id is not None
            outboxes[box.message_id] = MessageOutbox(
                id=box.id,
                state=OutboxState(box.state),
                reason=box.reason,
                attempts=box.attempts,
                next_attempt_at=box.next_attempt_at,
                sent_at=box.sent_at,
            )
    authors = await _staff_refs(session, (m.author_user_id for m in messages))
    result = []
    for m in messages:
        assert m.id is not None
        result.append(
            MessageOut(
                id=m.id,
                direction=Direction(m.direction),
                channel=Channel(m.channel),
                subject=m.subject,
                text=m.text,
                full_text=m.full_text,
                # Citizen HTML is sanitised before any browser can see it, whoever stored it;
                # its inline images keep their "cid:" address (see the attachments' content_id).
                html=nh3.clean(m.html, url_schemes=HTML_URL_SCHEMES) if m.html else None,
                sender=m.sender,
                author=authors.get(m.author_user_id) if m.author_user_id else None,
                delivery_status=DeliveryStatus(m.delivery_status),
                attachments=attachments.get(m.id, []),
                outbox=outboxes.get(m.id),
                segments=sms_segments(m.text) if m.channel == Channel.SMS.value else None,
                created_at=m.created_at,
            )
        )
    return result


async def ticket_detail(
    session: AsyncSession, staff: Staff, departments: Mapping[str, str], reference: str
) -> TicketDetail:
    """The ticket with its contact, messages (oldest first) and event history."""
    ticket = await visible_ticket(session, staff, reference)
    contact = await session.get_one(Contact, ticket.contact_id)
    identities = await session.scalars(
        sa.select(ContactIdentity)
        .where(col(ContactIdentity.contact_id) == ticket.contact_id)
        .order_by(col(ContactIdentity.id))
    )
    messages = (
        await session.scalars(
            sa.select(Message)
            .where(col(Message.ticket_id) == ticket.id)
            .order_by(col(Message.created_at), col(Message.id))
        )
    ).all()
    events = (
        await session.scalars(
            sa.select(TicketEvent)
            .where(col(TicketEvent.ticket_id) == ticket.id)
            .order_by(col(TicketEvent.created_at), col(TicketEvent.id))
        )
    ).all()
    actors = await _staff_refs(session, (e.actor_user_id for e in events))
    summary = _summary(ticket, contact, departments)
    assert contact.id is not None
    has_location = any(
        v is not None for v in (ticket.location_lat, ticket.location_lon, ticket.location_address)
    )
    return TicketDetail(
        **{k: v for k, v in summary if k != "contact"},
        contact=ContactDetail(
            id=contact.id,
            name=contact.display_name,
            language=contact.language,
            identities=[
                ContactIdentityOut(kind=IdentityKind(i.kind), value=i.value) for i in identities
            ],
        ),
        reply_address=ticket.reply_address,
        language=ticket.language,
        follows=await session.scalar(
            sa.select(col(Ticket.reference)).where(col(Ticket.id) == ticket.follows_id)
        )
        if ticket.follows_id is not None
        else None,
        survey=ticket.survey_state,
        satisfaction_comment=ticket.satisfaction_comment,
        location=Location(
            latitude=ticket.location_lat,
            longitude=ticket.location_lon,
            address=ticket.location_address,
        )
        if has_location
        else None,
        messages=await _messages_out(session, messages),
        events=[
            EventOut(
                id=e.id,
                type=e.type,
                actor=actors.get(e.actor_user_id) if e.actor_user_id else None,
                data=e.data,
                created_at=e.created_at,
            )
            for e in events
            if e.id is not None
        ],
    )


# Actions


def new_event(
    ticket: Ticket, staff: Staff, kind: str, data: dict[str, object], now: datetime
) -> TicketEvent:
    """A history row of ``ticket``, done by ``staff`` at ``now``."""
    assert ticket.id is not None
    return TicketEvent(
        ticket_id=ticket.id, type=kind, actor_user_id=staff.id, data=data, created_at=now
    )


def _check_transition(staff: Staff, current: TicketStatus, target: TicketStatus) -> None:
    if target == current:
        raise ConflictError("unchanged", f"the ticket is already {current}")
    allowed = TRANSITIONS[current]
    if target not in allowed:
        raise ConflictError(
            "invalid_transition",
            f"a {current} ticket cannot become {target}",
            {"from": current, "to": target, "allowed": _in_order(allowed)},
        )
    if current == CLOSED and not staff.sees_all:
        raise ForbiddenError("forbidden", REOPEN_FROM_CLOSED)


def _set_status(
    session: AsyncSession,
    ticket: Ticket,
    staff: Staff,
    target: TicketStatus,
    reason: str | None,
    now: datetime,
) -> None:
    current = ticket.status
    ticket.status = target
    if target == RESOLVED or (target == CLOSED and ticket.resolved_at is None):
        ticket.resolved_at = now
    elif target in (OPEN, PENDING):
        ticket.resolved_at = None
    session.add(
        new_event(
            ticket, staff, "status_changed", {"from": current, "to": target, "reason": reason}, now
        )
    )


async def _follow_status(
    session: AsyncSession,
    ticket: Ticket,
    followup: FollowUp | None,
    previous: TicketStatus,
    now: datetime,
) -> None:
    """Move the ticket's clock with its status: it stands still while the ticket waits for the
    citizen, a reopened ticket gets a new resolution deadline, and the timers follow."""
    target = TicketStatus(ticket.status)
    if target == PENDING and previous != PENDING:
        ticket.paused_since = now
    elif previous == PENDING and target == OPEN and followup is not None:
        row = ticket.model_dump()
        start = await clock_start(await session.connection(), row)
        for key, value in resume_values(followup, row, now, start).items():
            setattr(ticket, key, value)
    elif previous in (RESOLVED, CLOSED) and target == OPEN and followup is not None:
        for key, value in reopen_values(followup, ticket.model_dump(), now).items():
            setattr(ticket, key, value)
    elif target in (RESOLVED, CLOSED):
        ticket.paused_since = None
    if followup is not None:
        await session.flush()
        assert ticket.id is not None
        await reschedule(await session.connection(), followup, ticket.id, now)


async def _queue_answer(
    session: AsyncSession,
    ticket: Ticket,
    staff: Staff,
    channel: Channel,
    recipient: str | None,
    answer: str,
    now: datetime,
    *,
    followup: FollowUp | None,
    resolving: bool,
) -> int:
    """Queue a member of staff's answer to the citizen and record it; returns the message id.

    An answer that resolves the ticket goes in the town's "it's done" notice when the town has
    one. By e-mail the reference is in the subject, so the citizen's answer threads back.
    """
    assert ticket.id is not None
    subject, text = None, answer
    if resolving and followup is not None:
        contact = await session.get_one(Contact, ticket.contact_id)
        rendered = followup.render(
            Notice.RESOLVED,
            language=ticket.language or contact.language,
            channel=channel,
            kind=ticket.kind,
            values={
                "reference": ticket.reference,
                "name": contact.display_name,
                "reply": answer,
                "department": followup.department_name(ticket.department),
            },
        )
        if rendered is not None:
            subject, text = rendered
    if channel != Channel.EMAIL:
        subject = None
    elif subject is None:
        subject = (
            f"Re: {ticket.subject} [{ticket.reference}]"
            if ticket.subject
            else f"[{ticket.reference}]"
        )
    [(message_id, outbox_id)] = await queue_outbound(
        await session.connection(),
        [
            OutboundDraft(
                ticket_id=ticket.id,
                channel=channel,
                recipient=recipient,
                text=text,
                purpose=REPLY_PURPOSE,
                subject=subject,
                author_user_id=staff.id,
            )
        ],
        now,
    )
    session.add(
        new_event(
            ticket,
            staff,
            "replied",
            {"message_id": message_id, "outbox_id": outbox_id, "channel": channel},
            now,
        )
    )
    if ticket.first_answered_at is None:
        ticket.first_answered_at = now
    return message_id


async def _reply_address(
    session: AsyncSession, ticket: Ticket, override: Channel | None
) -> tuple[str, str | None]:
    """The channel and recipient of a reply; an override must match an identity of the contact."""
    default_channel = ticket.reply_channel or ticket.origin_channel
    channel = override or Channel(default_channel)
    if channel == ticket.reply_channel and ticket.reply_address:
        return channel, ticket.reply_address
    identities = (
        await session.scalars(
            sa.select(ContactIdentity)
            .where(col(ContactIdentity.contact_id) == ticket.contact_id)
            .order_by(col(ContactIdentity.id))
        )
    ).all()
    kind = REPLY_IDENTITY.get(channel)
    address = next((i.value for i in identities if i.kind == kind), None)
    if override is None or address is not None:
        # Without an override the reply is queued even with no address: the outbox row then
        # says why it waits, which is what staff need to see.
        return channel, address
    reachable = sorted(c for c, k in REPLY_IDENTITY.items() if any(i.kind == k for i in identities))
    if kind is None:
        raise UnprocessableError(
            "channel_not_replyable",
            f"replies cannot be sent on {channel}",
            {"channel": channel, "reachable_channels": reachable},
        )
    raise UnprocessableError(
        "no_address",
        f"the contact has no {kind} identity to reach on {channel}",
        {"channel": channel, "reachable_channels": reachable},
    )


@dataclass(frozen=True, slots=True)
class ReplyFile:
    """A file to send with a reply: decoded, named and typed as the API checked it."""

    filename: str
    content_type: str
    data: bytes


async def reply(
    session: AsyncSession,
    staff: Staff,
    reference: str,
    request: ReplyRequest,
    *,
    store: AttachmentStore,
    attachments: Sequence[ReplyFile] = (),
    followup: FollowUp | None = None,
) -> MessageOut:
    """Queue a reply to the citizen in the outbox and record it on the ticket.

    A new ticket becomes open unless ``request.status`` asks for another status. The files in
    ``attachments`` are written to ``store`` once the reply is known to be allowed, and recorded
    on the outbound message in the caller's transaction.
    """
    ticket = await visible_ticket(session, staff, reference, for_update=True)
    assert ticket.id is not None
    current = TicketStatus(ticket.status)
    if current == CLOSED:
        raise ConflictError("ticket_closed", "the ticket is closed; reopen it before replying")
    target = request.status or (OPEN if current == NEW else None)
    if request.status is not None and request.status != current:
        _check_transition(staff, current, request.status)
    channel, recipient = await _reply_address(session, ticket, request.channel)
    # On disk before the rows that name them are committed, as ingest does it: a stored reply
    # never points at a missing file. A transaction that fails later leaves an unreferenced file,
    # which costs only space.
    digests = [await store.put(file.data) for file in attachments]
    now = utcnow()
    message_id = await _queue_answer(
        session,
        ticket,
        staff,
        Channel(channel),
        recipient,
        request.text,
        now,
        followup=followup,
        resolving=target == RESOLVED,
    )
    session.add_all(
        AttachmentRow(
            message_id=message_id,
            filename=file.filename,
            content_type=file.content_type,
            size=len(file.data),
            sha256=digest,
        )
        for file, digest in zip(attachments, digests, strict=True)
    )
    if target is not None and target != current:
        _set_status(session, ticket, staff, target, "reply", now)
    ticket.updated_at = now
    await _follow_status(session, ticket, followup, current, now)
    message = await session.get_one(Message, message_id)
    [out] = await _messages_out(session, [message])
    return out


async def add_note(
    session: AsyncSession, staff: Staff, reference: str, request: NoteRequest
) -> MessageOut:
    """Add an internal note; it is never queued for sending."""
    ticket = await visible_ticket(session, staff, reference, for_update=True)
    assert ticket.id is not None
    now = utcnow()
    note = Message(
        ticket_id=ticket.id,
        direction=Direction.NOTE,
        channel=NOTE_CHANNEL,
        author_user_id=staff.id,
        text=request.text,
        delivery_status=DeliveryStatus.RECEIVED,
        created_at=now,
    )
    session.add(note)
    await session.flush()
    session.add(new_event(ticket, staff, "note", {"message_id": note.id}, now))
    ticket.updated_at = now
    [out] = await _messages_out(session, [note])
    return out


async def called_back(
    session: AsyncSession, staff: Staff, reference: str, request: CalledBackRequest
) -> EventOut:
    """Record that a staff member phoned the citizen, with an optional note on the call."""
    ticket = await visible_ticket(session, staff, reference, for_update=True)
    now = utcnow()
    event = new_event(ticket, staff, "called_back", {"note": request.note}, now)
    session.add(event)
    ticket.updated_at = now
    await session.flush()
    assert event.id is not None
    return EventOut(
        id=event.id,
        type=event.type,
        actor=StaffRef(id=staff.id, email=staff.email, name=staff.name),
        data=event.data,
        created_at=now,
    )


async def transfer(
    session: AsyncSession,
    staff: Staff,
    departments: Mapping[str, str],
    reference: str,
    request: TransferRequest,
) -> TicketSummary:
    """Move the ticket to another department, which may lie outside the agent's own."""
    ticket = await visible_ticket(session, staff, reference, for_update=True)
    if request.department not in departments:
        raise UnprocessableError(
            "unknown_department",
            f"unknown department '{request.department}'",
            {"valid": sorted(departments)},
        )
    if request.department == ticket.department:
        raise ConflictError("unchanged", f"the ticket is already with {request.department}")
    now = utcnow()
    session.add(
        new_event(
            ticket,
            staff,
            "transferred",
            {"from": ticket.department, "to": request.department, "reason": request.reason},
            now,
        )
    )
    ticket.department = request.department
    # The assignee belonged to the old department; the new one picks its own.
    ticket.assignee_id = None
    ticket.updated_at = now
    contact = await session.get_one(Contact, ticket.contact_id)
    return _summary(ticket, contact, departments)


async def change_status(
    session: AsyncSession,
    staff: Staff,
    departments: Mapping[str, str],
    reference: str,
    request: StatusRequest,
    *,
    followup: FollowUp | None = None,
) -> TicketSummary:
    """Move the ticket along ``TRANSITIONS``.

    Resolving takes an ``answer``, sent to the citizen in the "it's done" notice, or a
    ``reason`` why the citizen gets none; closing a ticket that was never resolved too.
    """
    ticket = await visible_ticket(session, staff, reference, for_update=True)
    assert ticket.id is not None
    current = TicketStatus(ticket.status)
    _check_transition(staff, current, request.status)
    if request.answer is not None and request.status != RESOLVED:
        raise UnprocessableError(
            "answer_not_allowed", "an answer goes with status 'resolved' only; use a reply"
        )
    finishing = request.status == RESOLVED or (request.status == CLOSED and current != RESOLVED)
    if finishing and request.answer is None and request.reason is None:
        raise UnprocessableError(
            "reason_required",
            f"a ticket {request.status} without an answer to the citizen needs a reason "
            "(or send an answer with it)",
            {"status": request.status},
        )
    now = utcnow()
    contact = await session.get_one(Contact, ticket.contact_id)
    if request.answer is not None:
        channel, recipient = await _reply_address(session, ticket, None)
        await _queue_answer(
            session,
            ticket,
            staff,
            Channel(channel),
            recipient,
            request.answer,
            now,
            followup=followup,
            resolving=True,
        )
    _set_status(session, ticket, staff, request.status, request.reason, now)
    ticket.updated_at = now
    await _follow_status(session, ticket, followup, current, now)
    return _summary(ticket, contact, departments)


# The outbox


async def list_outbox(
    session: AsyncSession,
    staff: Staff,
    states: Collection[str],
    limit: int,
    cursor: str | None = None,
) -> OutboxPage:
    """Outbox rows newest first, for admins and operators only.

    Raises:
        ForbiddenError: the staff member is an agent.
    """
    if not staff.sees_all:
        raise ForbiddenError("forbidden", "only admins and operators may read the outbox")
    query = sa.select(OutboxRow, col(Ticket.reference)).join(
        Ticket, col(Ticket.id) == col(OutboxRow.ticket_id)
    )
    if states:
        query = query.where(col(OutboxRow.state).in_(sorted(states)))
    if cursor is not None:
        query = query.where(col(OutboxRow.id) < decode_id_cursor(cursor))
    query = query.order_by(col(OutboxRow.id).desc()).limit(limit + 1)
    rows = (await session.execute(query)).all()
    page = rows[:limit]
    items = []
    for box, reference in page:
        items.append(outbox_item(box, reference))
    next_cursor = encode_cursor(str(page[-1][0].id)) if len(rows) > limit else None
    return OutboxPage(items=items, next_cursor=next_cursor)


def outbox_item(box: OutboxRow, reference: str) -> OutboxItem:
    """An outbox row as the API shows it."""
    assert box.id is not None
    return OutboxItem(
        id=box.id,
        ticket_reference=reference,
        message_id=box.message_id,
        purpose=box.purpose,
        channel=Channel(box.channel),
        recipient=box.recipient,
        state=OutboxState(box.state),
        reason=box.reason,
        attempts=box.attempts,
        next_attempt_at=box.next_attempt_at,
        created_at=box.created_at,
        sent_at=box.sent_at,
    )
