"""Quarantined messages: list them, and process them again once the cause is fixed.

A message lands in quarantine when the pipeline could not turn it into a ticket (its journal row
keeps the raw payload, the normalised envelope and the error). Retrying submits the envelope to
intake as if it had just arrived and marks the old row ``replayed`` (it keeps its error); the new
attempt has a journal row of its own, quarantined again with the new error if it still fails.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from ingest.codec import message_from_envelope
from ingest.model import Channel, IntakeResult, RawPayload
from ingest.pipeline import Intake
from store.models import JournalEntry, table_of

JOURNAL = table_of(JournalEntry)


@dataclass(frozen=True, slots=True)
class QuarantinedMessage:
    id: int
    channel: str
    external_id: str
    received_at: datetime
    error: str


async def list_quarantined(engine: AsyncEngine, limit: int = 100) -> list[QuarantinedMessage]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(
                JOURNAL.c.id,
                JOURNAL.c.channel,
                JOURNAL.c.external_id,
                JOURNAL.c.received_at,
                JOURNAL.c.error,
            )
            .where(JOURNAL.c.state == "quarantined")
            .order_by(JOURNAL.c.id)
            .limit(limit)
        )
        return [QuarantinedMessage(*row) for row in rows]


Redeliver = Callable[[Channel, RawPayload], Awaitable[None]]


async def retry_quarantined(
    engine: AsyncEngine, intake: Intake, journal_id: int, redeliver: Redeliver | None = None
) -> IntakeResult | None:
    """Process a quarantined entry again; raise LookupError if there is no such entry.

    An entry with a normalised envelope is submitted as it is. One without (its connector could
    not parse the payload) goes back to its connector through ``redeliver``, which parses the
    payload with today's code; its outcome then has a journal row of its own, and this returns
    None.
    """
    async with engine.connect() as conn:
        row = (
            (
                await conn.execute(
                    sa.select(JOURNAL).where(
                        JOURNAL.c.id == journal_id, JOURNAL.c.state == "quarantined"
                    )
                )
            )
            .mappings()
            .first()
        )
    if row is None:
        raise LookupError(f"no quarantined message with id {journal_id}")
    raw = RawPayload(row["content_type"], row["payload"])
    result: IntakeResult | None
    if row["envelope"]:
        result = await intake.submit(message_from_envelope(row["envelope"], raw))
    elif redeliver is None:
        raise LookupError(
            f"entry {journal_id} was never parsed; only its channel's connector can retry it"
        )
    else:
        await redeliver(Channel(row["channel"]), raw)
        result = None
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(JOURNAL).where(JOURNAL.c.id == journal_id).values(state="replayed")
        )
    return result
