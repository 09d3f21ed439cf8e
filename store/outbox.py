"""The durable outbox: queueing outbound messages and the dispatcher's claim/settle steps.

Every outbound message (acknowledgement, staff reply, later notices and surveys) is a ``messages``
row plus an ``outbox`` row, written in the caller's transaction, so a reply is never queued
without its ticket history and never lost after the API answered.

Rows move ``pending`` → ``sending`` (claimed in a batch, committed) → ``sent`` or back to
``pending`` with a later ``next_attempt_at``, or ``failed`` after the last attempt, or
``waiting`` for the citizen to write again. Just before a row's own provider call its
``attempt_started_at`` is set and committed. A row found ``sending`` with it set after a crash,
or whose send timed out after the request may have gone out, may or may not have reached the
provider; it is marked ``uncertain`` and never sent again blindly: the dispatcher asks the
channel's provider about it (found: ``sent``; safe to send again: ``pending``), and what the
provider cannot tell, staff settle in the inbox ("send again" or "it arrived"). A row claimed but
never started goes back to ``pending``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from store.batch import insert_rows
from store.models import Message, OutboxRow, table_of

MESSAGES = table_of(Message)
OUTBOX = table_of(OutboxRow)

PENDING, SENDING, SENT, FAILED, UNCERTAIN = "pending", "sending", "sent", "failed", "uncertain"
# Parked until the citizen writes again on the row's channel (WhatsApp's closed 24-hour window);
# ingest turns such rows back to ``pending`` when that message arrives.
WAITING = "waiting"

# Mails meldpunt writes to staff about a ticket: they are no part of the citizen's thread.
STAFF_PURPOSES = frozenset(
    {"deadline_warning", "deadline_missed", "compliment_forward", "low_score"}
)


@dataclass(frozen=True, slots=True)
class OutboundDraft:
    """An outbound message to queue on a ticket."""

    ticket_id: int
    channel: str
    recipient: str | None
    text: str
    purpose: str
    subject: str | None = None
    author_user_id: int | None = None
    reason: str | None = None
    # "out" for the citizen; "note" for a mail to staff (a deadline warning, a forwarded
    # compliment), which shows among the ticket's internal notes.
    direction: str = "out"
    # Buttons for channels that have them (the survey's 1-5); their text comes back as a reply.
    choices: tuple[str, ...] = ()


async def queue_outbound(
    conn: AsyncConnection, drafts: Sequence[OutboundDraft], now: datetime
) -> list[tuple[int, int]]:
    """Insert the message and outbox rows of ``drafts``; return (message id, outbox id) pairs.

    A draft without a recipient is queued all the same, with its reason, so staff see it.
    """
    if not drafts:
        return []
    message_ids = await insert_rows(
        conn,
        MESSAGES,
        [
            {
                "ticket_id": d.ticket_id,
                "direction": d.direction,
                "channel": d.channel,
                "external_id": None,
                "author_user_id": d.author_user_id,
                "sender": None,
                "subject": d.subject,
                "text": d.text,
                "html": None,
                "delivery_status": PENDING,
                "created_at": now,
            }
            for d in drafts
        ],
    )
    outbox_ids = await insert_rows(
        conn,
        OUTBOX,
        [
            {
                "message_id": mid,
                "ticket_id": d.ticket_id,
                "purpose": d.purpose,
                "channel": d.channel,
                "recipient": d.recipient,
                "subject": d.subject,
                "body": d.text,
                "state": PENDING,
                "reason": d.reason
                or (None if d.recipient else "the citizen left no address on this channel"),
                "attempts": 0,
                "next_attempt_at": now,
                "claimed_at": None,
                "provider_id": None,
                "created_at": now,
                "sent_at": None,
                "choices": list(d.choices) or None,
            }
            for mid, d in zip(message_ids, drafts, strict=True)
        ],
    )
    return list(zip(message_ids, outbox_ids, strict=True))


def backoff(attempts: int, base: float, ceiling: float) -> timedelta:
    """Exponential back-off: base, 2·base, 4·base … capped at ``ceiling`` seconds."""
    return timedelta(seconds=min(ceiling, base * (2 ** max(0, attempts - 1))))
