"""Input that did not become a ticket, for admins and operators: list it, download it, retry it.

The journal keeps every delivery with its raw payload. Staff see the entries that were quarantined
(could not be processed), ignored (not a citizen writing) or replayed (retried since). Retrying
needs the running intake and connectors, which the API does not own: it gets a ``RetryHook``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from inbox.auth import Staff
from inbox.errors import ConflictError, ForbiddenError, NotFoundError, ServiceUnavailableError
from inbox.schemas import JournalState, QuarantineItem, QuarantinePage, RetryOutcome, RetryResult
from inbox.tickets import MAX_ROW_ID, decode_id_cursor, encode_cursor
from ingest.model import Channel, IntakeResult, IntakeUnavailable
from store.models import JournalEntry

RetryHook = Callable[[int], Awaitable[IntakeResult | None]]
"""Processes the quarantined journal entry with this id again (``ingest.quarantine``'s contract).

Returns the intake result, or None when the entry went back to its channel's connector. Raises
``LookupError`` (no such quarantined entry; channel not enabled), ``NotImplementedError`` (the
connector cannot read stored input again) or ``IntakeUnavailable``.
"""

DEFAULT_STATES = (JournalState.QUARANTINED,)
OCTET_STREAM = "application/octet-stream"
# File name extensions of the payloads connectors store, for a download that opens in the right
# program (an .eml opens in a mail client); the fixtures under tests/fixtures use the same.
_EXTENSIONS = {
    "message/rfc822": "eml",
    "application/json": "json",
    "application/x-www-form-urlencoded": "urlencoded",
}


def _require_overview(staff: Staff) -> None:
    # Raw input is not yet routed to a department, so only those who see every department may
    # read it.
    if not staff.sees_all:
        raise ForbiddenError("forbidden", "only admins and operators may use the quarantine")


def _not_found(journal_id: int) -> NotFoundError:
    return NotFoundError("not_found", f"no entry {journal_id} in the quarantine")


def _entry_is(journal_id: int, states: Collection[str]) -> sa.ColumnElement[bool]:
    if not 0 < journal_id <= MAX_ROW_ID:
        raise _not_found(journal_id)
    return sa.and_(col(JournalEntry.id) == journal_id, col(JournalEntry.state).in_(sorted(states)))


async def list_quarantine(
    session: AsyncSession,
    staff: Staff,
    states: Collection[str],
    limit: int,
    cursor: str | None = None,
) -> QuarantinePage:
    """Journal entries in ``states`` (default: quarantined), newest first, one page at a time.

    Raises:
        ForbiddenError: the staff member is an agent.
    """
    _require_overview(staff)
    payload_size = sa.func.length(col(JournalEntry.payload)).label("size")
    # An unparsed entry's envelope is stored as the empty object; asking the database spares
    # loading every envelope (a whole normalised message) just to see whether it is empty.
    parsed = (sa.cast(col(JournalEntry.envelope), sa.Text) != "{}").label("parsed")
    query = sa.select(
        col(JournalEntry.id),
        col(JournalEntry.state),
        col(JournalEntry.channel),
        col(JournalEntry.external_id),
        col(JournalEntry.received_at),
        col(JournalEntry.error),
        col(JournalEntry.content_type),
        payload_size,
        parsed,
    ).where(col(JournalEntry.state).in_(sorted(states or DEFAULT_STATES)))
    if cursor is not None:
        query = query.where(col(JournalEntry.id) < decode_id_cursor(cursor))
    query = query.order_by(col(JournalEntry.id).desc()).limit(limit + 1)
    rows = (await session.execute(query)).all()
    page = rows[:limit]
    items = [
        QuarantineItem(
            id=row.id,
            state=JournalState(row.state),
            channel=Channel(row.channel),
            external_id=row.external_id,
            received_at=row.received_at,
            error=row.error,
            content_type=row.content_type,
            size=row.size,
            parsed=bool(row.parsed),
        )
        for row in page
    ]
    next_cursor = encode_cursor(str(page[-1].id)) if len(rows) > limit else None
    return QuarantinePage(items=items, next_cursor=next_cursor)


@dataclass(frozen=True, slots=True)
class RawDownload:
    """A journalled payload as a file: its bytes, content type and a file name for saving it."""

    filename: str
    content_type: str
    body: bytes


def _safe_content_type(value: str) -> str:
    # Written by a connector, sometimes copied from the provider's request: anything that could
    # not stand in a header as it is becomes a plain byte stream.
    if not value or not value.isascii() or not value.isprintable():
        return OCTET_STREAM
    return value


async def raw_payload(session: AsyncSession, staff: Staff, journal_id: int) -> RawDownload:
    """The raw payload of a listed entry (quarantined, ignored or replayed).

    Raises:
        ForbiddenError: the staff member is an agent.
        NotFoundError: no such entry among those the quarantine lists.
    """
    _require_overview(staff)
    entry = (
        await session.scalars(
            sa.select(JournalEntry).where(_entry_is(journal_id, list(JournalState)))
        )
    ).first()
    if entry is None:
        raise _not_found(journal_id)
    content_type = _safe_content_type(entry.content_type)
    media_type = content_type.partition(";")[0].strip().lower()
    extension = _EXTENSIONS.get(media_type, "bin")
    return RawDownload(f"{entry.channel}-{journal_id}.{extension}", content_type, entry.payload)


async def check_retryable(session: AsyncSession, staff: Staff, journal_id: int) -> None:
    """Make sure the entry exists and is still quarantined before a retry is attempted.

    Raises:
        ForbiddenError: the staff member is an agent.
        NotFoundError: no quarantined entry with this id (also one already retried).
    """
    _require_overview(staff)
    found = await session.scalar(
        sa.select(col(JournalEntry.id)).where(_entry_is(journal_id, [JournalState.QUARANTINED]))
    )
    if found is None:
        raise _not_found(journal_id)


def _outcome(result: IntakeResult | None) -> RetryOutcome:
    if result is None:
        return RetryOutcome.HANDED_TO_CONNECTOR
    if result.quarantined:
        return RetryOutcome.STILL_QUARANTINED
    if result.duplicate:
        return RetryOutcome.DUPLICATE
    return RetryOutcome.TICKET


async def retry(hook: RetryHook | None, journal_id: int) -> RetryResult:
    """Process a quarantined entry again through ``hook``; call ``check_retryable`` first.

    Raises:
        ConflictError: this server cannot retry, or the entry's channel cannot take it back.
        ServiceUnavailableError: intake is not running.
    """
    if hook is None:
        raise ConflictError(
            "retry_unavailable",
            "this server does not process quarantined messages again; "
            f"run 'meldpunt quarantine --retry {journal_id}' instead",
            {"id": journal_id},
        )
    try:
        result = await hook(journal_id)
    except (LookupError, NotImplementedError) as exc:
        # The entry was just seen quarantined, so this is about its channel (not enabled, or
        # its connector cannot read stored input again), or another retry came first.
        raise ConflictError("cannot_retry", str(exc), {"id": journal_id}) from None
    except IntakeUnavailable:
        # Intake has logged the cause; the caller only needs to know that nothing happened.
        raise ServiceUnavailableError(
            "intake_unavailable",
            "intake is not available, nothing was done; try again later",
            {"id": journal_id},
        ) from None
    reference = None if result is None or result.quarantined else result.ticket_reference
    return RetryResult(outcome=_outcome(result), ticket_reference=reference)
