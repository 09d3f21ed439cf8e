"""A citizen's contact events (calls answered at the front desk), and turning one into a ticket.

The ticket is made by intake, like every other ticket: the event becomes an inbound message on
its channel whose external id names the event, so the reference, routing, events and journal
are intake's, and a retry after a failure finds the ticket already made instead of a second one.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from inbox.auth import Staff
from inbox.errors import (
    ConflictError,
    ForbiddenError,
    NotFoundError,
    ServiceUnavailableError,
    UnprocessableError,
)
from inbox.schemas import ContactEventList, ContactEventOut, ContactEventTicketRequest
from inbox.tickets import MAX_ROW_ID
from ingest.model import (
    Channel,
    ContactRef,
    Identity,
    IdentityKind,
    InboundMessage,
    IntakeResult,
    IntakeUnavailable,
    RawPayload,
)
from store.models import Contact, ContactEvent, ContactIdentity, Ticket, TicketEvent, utcnow

Submit = Callable[[InboundMessage], Awaitable[IntakeResult]]
"""Intake's ``submit``: stores an inbound message durably and returns the ticket it landed on."""

EVENT_PREFIX = "event:"


def _require_overview(staff: Staff) -> None:
    # An event belongs to no department yet, so only those who see every department may see it.
    if not staff.sees_all:
        raise ForbiddenError("forbidden", "only admins and operators may use contact events")


def _out(event: ContactEvent, reference: str | None) -> ContactEventOut:
    assert event.id is not None
    return ContactEventOut(
        id=event.id,
        contact_id=event.contact_id,
        channel=Channel(event.channel),
        type=event.type,
        data=event.data,
        created_at=event.created_at,
        ticket_reference=reference,
    )


async def list_contact_events(
    session: AsyncSession, staff: Staff, contact_id: int, limit: int
) -> ContactEventList:
    """The contact's newest ``limit`` events with the reference of any ticket made of them.

    Raises:
        ForbiddenError: the staff member is an agent.
        NotFoundError: no such contact.
    """
    _require_overview(staff)
    if not 0 < contact_id <= MAX_ROW_ID or await session.get(Contact, contact_id) is None:
        raise NotFoundError("not_found", f"no contact {contact_id}")
    rows = await session.execute(
        sa.select(ContactEvent, col(Ticket.reference))
        .outerjoin(Ticket, col(Ticket.id) == col(ContactEvent.ticket_id))
        .where(col(ContactEvent.contact_id) == contact_id)
        .order_by(col(ContactEvent.created_at).desc(), col(ContactEvent.id).desc())
        .limit(limit)
    )
    return ContactEventList(items=[_out(event, reference) for event, reference in rows])


async def _untreated_event(session: AsyncSession, staff: Staff, event_id: int) -> ContactEvent:
    _require_overview(staff)
    event = await session.get(ContactEvent, event_id) if 0 < event_id <= MAX_ROW_ID else None
    if event is None:
        raise NotFoundError("not_found", f"no contact event {event_id}")
    if event.ticket_id is not None:
        raise ConflictError("already_ticket", f"contact event {event_id} is already a ticket")
    return event


async def ticket_message(
    session: AsyncSession,
    staff: Staff,
    departments: Mapping[str, str],
    event_id: int,
    request: ContactEventTicketRequest,
) -> InboundMessage:
    """The inbound message intake makes the event's ticket of.

    Raises:
        ForbiddenError: the staff member is an agent.
        NotFoundError: no such event.
        ConflictError: the event is already a ticket.
        UnprocessableError: an unknown department.
    """
    event = await _untreated_event(session, staff, event_id)
    if request.department is not None and request.department not in departments:
        raise UnprocessableError(
            "unknown_department",
            f"unknown department '{request.department}'",
            {"valid": sorted(departments)},
        )
    contact = await session.get_one(Contact, event.contact_id)
    identities = (
        await session.scalars(
            sa.select(ContactIdentity)
            .where(col(ContactIdentity.contact_id) == event.contact_id)
            .order_by(col(ContactIdentity.id))
        )
    ).all()
    caller = str(event.data.get("caller") or "")
    text = request.text or f"Oproep van {caller or 'een burger'} beantwoord aan het onthaal."
    # What staff asked for is the payload journalled with the message.
    raw = {"contact_event": event_id, "staff": staff.id, **request.model_dump(mode="json")}
    return InboundMessage(
        channel=Channel(event.channel),
        external_id=f"{EVENT_PREFIX}{event_id}",
        sender=ContactRef(
            tuple(Identity(IdentityKind(i.kind), i.value) for i in identities),
            display_name=contact.display_name,
            language=contact.language,
        ),
        received_at=event.created_at,
        text=text,
        raw=RawPayload("application/json", json.dumps(raw).encode()),
        subject=request.subject,
        kind=request.kind,
        # Nobody wrote: the citizen was on the phone and expects no acknowledgement.
        automatic=True,
    )


async def submit_ticket(submit: Submit | None, message: InboundMessage) -> str:
    """Have intake make the ticket; its reference.

    Raises:
        ServiceUnavailableError: intake is not running or could not store the message.
    """
    if submit is None:
        raise ServiceUnavailableError("unavailable", "this server cannot make tickets")
    try:
        result = await submit(message)
    except IntakeUnavailable as exc:
        raise ServiceUnavailableError("unavailable", f"intake unavailable: {exc}") from exc
    if result.ticket_reference is None:
        raise ServiceUnavailableError("unavailable", "intake could not make the ticket")
    return result.ticket_reference


async def link_ticket(
    session: AsyncSession,
    staff: Staff,
    event_id: int,
    reference: str,
    department: str | None,
) -> ContactEventOut:
    """Link the event to the ticket made of it, in the department staff chose if they did.

    Raises:
        ConflictError: another request linked the event first.
    """
    ticket = (
        await session.scalars(
            sa.select(Ticket).where(col(Ticket.reference) == reference).with_for_update()
        )
    ).one()
    assert ticket.id is not None
    linked = await session.execute(
        sa.update(ContactEvent)
        .where(col(ContactEvent.id) == event_id, col(ContactEvent.ticket_id).is_(None))
        .values(ticket_id=ticket.id)
    )
    if linked.rowcount == 0:  # type: ignore[attr-defined]
        raise ConflictError("already_ticket", f"contact event {event_id} is already a ticket")
    if department is not None and department != ticket.department:
        # The router's choice stays in the 'routed' event; this records who overrode it.
        now = utcnow()
        session.add(
            TicketEvent(
                ticket_id=ticket.id,
                type="transferred",
                actor_user_id=staff.id,
                data={
                    "from": ticket.department,
                    "to": department,
                    "reason": "chosen at the front desk",
                },
                created_at=now,
            )
        )
        ticket.department = department
        ticket.updated_at = now
    event = await session.get_one(ContactEvent, event_id)
    await session.refresh(event)
    return _out(event, reference)
