"""Staff settle a message whose delivery is uncertain: send it again, or mark it as arrived.

The dispatcher asks the provider about an uncertain send where the channel allows it
(``ingest.dispatch``); what stays uncertain is for a person, who may have asked the citizen. Only
an ``uncertain`` row can be settled, by staff who may see its ticket; each decision is a ticket
event naming who took it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from inbox.auth import Staff
from inbox.errors import ConflictError, NotFoundError
from inbox.schemas import OutboxItem
from inbox.tickets import MAX_ROW_ID, new_event, outbox_item
from ingest.dispatch import RECONCILED
from store.models import Message, OutboxRow, Ticket
from store.outbox import PENDING, SENT, UNCERTAIN

Decision = Literal["resend", "confirm"]
# The ticket event each decision leaves.
EVENTS: dict[Decision, str] = {"resend": "delivery_resent", "confirm": "delivery_confirmed"}


@dataclass(frozen=True, slots=True)
class Settled:
    reference: str
    item: OutboxItem


async def settle_uncertain(
    session: AsyncSession,
    staff: Staff,
    outbox_id: int,
    decision: Decision,
    now: datetime,
    of_ticket: Ticket | None = None,
) -> Settled:
    """Send an uncertain message again (``resend``) or record that it arrived (``confirm``).

    Raises:
        NotFoundError: no such outbox row, its ticket is outside the staff member's
            departments, or it is not a row of ``of_ticket`` when that is given.
        ConflictError: the row's delivery is not uncertain (``not_uncertain``).
    """
    found = (
        (
            await session.execute(
                sa.select(OutboxRow, Ticket)
                .join(Ticket, col(Ticket.id) == col(OutboxRow.ticket_id))
                .where(col(OutboxRow.id) == outbox_id)
                .with_for_update(of=OutboxRow)
            )
        ).first()
        if 0 < outbox_id <= MAX_ROW_ID
        else None
    )
    if (
        found is None
        or not staff.can_see(found[1].department)
        or (of_ticket is not None and found[1].id != of_ticket.id)
    ):
        raise NotFoundError("not_found", f"no outbox message {outbox_id}")
    box, ticket = found
    if box.state != UNCERTAIN:
        raise ConflictError(
            "not_uncertain",
            f"only a message whose delivery is uncertain can be settled; this one is {box.state}",
            {"state": box.state},
        )
    message = await session.get_one(Message, box.message_id)
    if decision == "resend":
        box.state, box.next_attempt_at = PENDING, now
        box.claimed_at = box.attempt_started_at = None
        box.lookups = 0
        box.reason = "sent again at a staff member's request"
        message.delivery_status = PENDING
    else:
        box.state, box.sent_at = SENT, now
        box.reason = "marked as arrived by a staff member"
        message.delivery_status = SENT
    session.add(
        new_event(
            ticket,
            staff,
            EVENTS[decision],
            {"outbox_id": outbox_id, "message_id": box.message_id, "channel": box.channel},
            now,
        )
    )
    await session.flush()
    RECONCILED.labels(
        box.channel, f"{'resent' if decision == 'resend' else 'confirmed'}_by_staff"
    ).inc()
    return Settled(ticket.reference, outbox_item(box, ticket.reference))
