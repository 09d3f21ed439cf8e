"""Quarantined messages: list them, and process them again once the cause is fixed.

A message lands in quarantine when the pipeline could not turn it into a ticket (its journal row
keeps the raw payload, the normalised envelope and the error). Retrying submits the envelope to
intake as if it had just arrived and marks the old row ``replayed`` (it keeps its error); the new
attempt has a journal row of its own, quarantined again with the new error if it still fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from ingest.codec import message_from_envelope
from ingest.model import IntakeResult, RawPayload
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


async def retry_quarantined(engine: AsyncEngine, intake: Intake, journal_id: int) -> IntakeResult:
    """Submit a quarantined message again; raise LookupError if there is no such entry."""
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
    message = message_from_envelope(
        row["envelope"], RawPayload(row["content_type"], row["payload"])
    )
    result = await intake.submit(message)
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(JOURNAL).where(JOURNAL.c.id == journal_id).values(state="replayed")
        )
    return result
