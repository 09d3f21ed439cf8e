"""Work on tickets beyond answering: assign, change kind, priority and tags, merge duplicate
tickets, and merge two contacts that are one citizen.

Like ``inbox.tickets``, every function takes an open session and the acting ``Staff``, enforces
department scope (a ticket an agent may not see is "not found") and records each change as a
ticket event with the actor, so the history tells who did what.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from inbox.auth import Staff
from inbox.errors import ConflictError, ForbiddenError, NotFoundError, UnprocessableError
from inbox.schemas import StaffRef, StatusRequest
from inbox.tickets import change_status, new_event, visible_ticket
from ingest.followup import CANCELLED, PENDING
from ingest.model import Kind, Priority, TicketStatus
from store.models import (
    Contact,
    ContactEvent,
    ContactIdentity,
    Message,
    OutboxRow,
    Ticket,
    TicketEvent,
    Timer,
    User,
    utcnow,
)
from store.users import Role

# Event types this module writes (``transferred`` and ``status_changed`` come from tickets).
ASSIGNED = "assigned"
KIND_CHANGED = "kind_changed"
PRIORITY_CHANGED = "priority_changed"
TAGS_CHANGED = "tags_changed"
MERGED_INTO = "merged_into"
MERGED = "merged"
CONTACT_MERGED = "contact_merged"

MAX_TAGS = 20
MAX_TAG_LENGTH = 40


# Assigning


def may_hold(user: User, department: str) -> bool:
    """Whether ``user`` may be assigned a ticket of ``department``: an active admin or operator,
    or an active agent of that department."""
    if not user.active:
        return False
    return user.role in (Role.ADMIN, Role.OPERATOR) or department in user.departments


async def colleagues(session: AsyncSession, department: str) -> list[StaffRef]:
    """Who may be assigned a ticket of ``department``, by name."""
    users = await session.scalars(sa.select(User).where(col(User.active).is_(True)))
    found = [
        StaffRef(id=u.id, email=u.email, name=u.name)
        for u in users
        if u.id is not None and may_hold(u, department)
    ]
    return sorted(found, key=lambda s: ((s.name or s.email).casefold(), s.id))


async def assign(
    session: AsyncSession, staff: Staff, reference: str, assignee_id: int | None
) -> Ticket:
    """Give the ticket to a colleague, or to nobody (``assignee_id`` None).

    Raises:
        NotFoundError: the ticket is not visible to ``staff``.
        UnprocessableError: ``not_assignable``: no active user of the ticket's department (or
            admin or operator) has that id.
        ConflictError: ``unchanged``: the ticket is already with that person.
    """
    ticket = await visible_ticket(session, staff, reference, for_update=True)
    name: str | None = None
    if assignee_id is not None:
        user = await session.get(User, assignee_id)
        if user is None or not may_hold(user, ticket.department):
            raise UnprocessableError(
                "not_assignable",
                "only an active colleague of the ticket's department, an admin or an operator "
                "can be assigned",
                {"assignee_id": assignee_id, "department": ticket.department},
            )
        name = user.name or user.email
    if ticket.assignee_id == assignee_id:
        raise ConflictError("unchanged", "the ticket is already assigned so")
    now = utcnow()
    session.add(
        new_event(
            ticket,
            staff,
            ASSIGNED,
            {"from": ticket.assignee_id, "to": assignee_id, "name": name},
            now,
        )
    )
    ticket.assignee_id = assignee_id
    ticket.updated_at = now
    return ticket


# Kind, priority and tags

_SPACES = re.compile(r"\s+")


def normalise_tags(text: str | Sequence[str]) -> list[str]:
    """Tags from free text: comma-separated, trimmed, lower case, inner spaces single, no
    duplicates, in the order first written.

    Raises:
        UnprocessableError: ``invalid_tags``: too many tags or one too long.
    """
    parts = text.split(",") if isinstance(text, str) else list(text)
    tags = list(dict.fromkeys(t for p in parts if (t := _SPACES.sub(" ", p).strip().lower())))
    if len(tags) > MAX_TAGS:
        raise UnprocessableError("invalid_tags", f"at most {MAX_TAGS} tags", {"max_tags": MAX_TAGS})
    long = [t for t in tags if len(t) > MAX_TAG_LENGTH]
    if long:
        raise UnprocessableError(
            "invalid_tags",
            f"a tag has at most {MAX_TAG_LENGTH} characters",
            {"max_length": MAX_TAG_LENGTH, "too_long": long},
        )
    return tags


async def change_details(
    session: AsyncSession,
    staff: Staff,
    reference: str,
    *,
    kind: Kind | None = None,
    priority: Priority | None = None,
    tags: Sequence[str] | None = None,
) -> Ticket:
    """Change the ticket's kind, priority and/or tags (None: leave as is); one event per change.

    The deadlines set when the ticket came in stay: they were promised to the citizen.

    Raises:
        NotFoundError: the ticket is not visible to ``staff``.
        UnprocessableError: ``invalid_tags``.
        ConflictError: ``unchanged``: nothing differs from what the ticket has.
    """
    ticket = await visible_ticket(session, staff, reference, for_update=True)
    now = utcnow()
    changed = False
    if kind is not None and kind != ticket.kind:
        session.add(new_event(ticket, staff, KIND_CHANGED, {"from": ticket.kind, "to": kind}, now))
        ticket.kind = kind
        changed = True
    if priority is not None and priority != ticket.priority:
        session.add(
            new_event(
                ticket, staff, PRIORITY_CHANGED, {"from": ticket.priority, "to": priority}, now
            )
        )
        ticket.priority = priority
        changed = True
    if tags is not None:
        wanted = normalise_tags(tags)
        if wanted != list(ticket.tags):
            old = list(ticket.tags)
            session.add(
                new_event(
                    ticket,
                    staff,
                    TAGS_CHANGED,
                    {
                        "added": [t for t in wanted if t not in old],
                        "removed": [t for t in old if t not in wanted],
                        "tags": wanted,
                    },
                    now,
                )
            )
            ticket.tags = wanted
            changed = True
    if not changed:
        raise ConflictError("unchanged", "kind, priority and tags are already so")
    ticket.updated_at = now
    return ticket


# Merging tickets


async def merged_into(session: AsyncSession, ticket_id: int) -> str | None:
    """The reference of the ticket this one was merged into, if it was."""
    data = await session.scalar(
        sa.select(col(TicketEvent.data))
        .where(col(TicketEvent.ticket_id) == ticket_id, col(TicketEvent.type) == MERGED_INTO)
        .order_by(col(TicketEvent.id).desc())
        .limit(1)
    )
    return str(data["into"]) if isinstance(data, dict) and data.get("into") else None


@dataclass(frozen=True, slots=True)
class TicketMerge:
    """What a ticket merge did."""

    source: str
    target: str
    messages: int


async def merge_tickets(
    session: AsyncSession,
    staff: Staff,
    departments: Mapping[str, str],
    source_reference: str,
    target_reference: str,
) -> TicketMerge:
    """Merge a duplicate ticket (source) into another one (target).

    The source's messages, with their attachments and outbox rows, move to the target, where
    they take their place by time; its contact events and tags go along. The source is closed
    with a ``merged_into`` event, the target gets a ``merged`` event, and the source's pending
    timers (deadline warnings, survey, closing) are cancelled: the target's clock counts.

    Threading keeps working because it follows the messages: an e-mail answering one of the
    source's messages names that message's id, which now belongs to the target. A chat or
    phone conversation the source continued moves to the target when both have the same
    citizen and the target has none of its own.

    Raises:
        NotFoundError: either ticket is not visible to ``staff``.
        UnprocessableError: ``same_ticket``.
        ConflictError: ``already_merged``: the source is merged already; ``target_merged``: the
            target is merged into a third ticket (merge into that one).
    """
    if source_reference == target_reference:
        raise UnprocessableError("same_ticket", "a ticket cannot be merged into itself")
    # Locked in a fixed order, so two opposite merges at once wait instead of deadlocking.
    locked = {
        ref: await visible_ticket(session, staff, ref, for_update=True)
        for ref in sorted((source_reference, target_reference))
    }
    source, target = locked[source_reference], locked[target_reference]
    assert source.id is not None and target.id is not None
    if (into := await merged_into(session, source.id)) is not None:
        raise ConflictError(
            "already_merged", f"{source.reference} is merged into {into}", {"into": into}
        )
    if (into := await merged_into(session, target.id)) is not None:
        raise ConflictError(
            "target_merged",
            f"{target.reference} is merged into {into}; merge into {into} instead",
            {"into": into},
        )
    moved = await session.execute(
        sa.update(Message).where(col(Message.ticket_id) == source.id).values(ticket_id=target.id)
    )
    count = int(getattr(moved, "rowcount", 0) or 0)
    await session.execute(
        sa.update(OutboxRow)
        .where(col(OutboxRow.ticket_id) == source.id)
        .values(ticket_id=target.id)
    )
    await session.execute(
        sa.update(ContactEvent)
        .where(col(ContactEvent.ticket_id) == source.id)
        .values(ticket_id=target.id)
    )
    target.tags = list(dict.fromkeys([*target.tags, *source.tags]))
    if (
        source.conversation
        and source.contact_id == target.contact_id
        and target.conversation in (None, source.conversation)
    ):
        # Intake finds a conversation's ticket by (conversation, contact): only one may hold it.
        target.conversation, source.conversation = source.conversation, None
    if source.status != TicketStatus.CLOSED:
        # Without the follow-up: a merged ticket gets no survey nor "it's done" notice.
        await change_status(
            session,
            staff,
            departments,
            source.reference,
            StatusRequest(status=TicketStatus.CLOSED, reason=f"merged into {target.reference}"),
        )
    # After the status change, so the history reads "closed", then "merged into".
    now = utcnow()
    await session.execute(
        sa.update(Timer)
        .where(col(Timer.ticket_id) == source.id, col(Timer.state) == PENDING)
        .values(state=CANCELLED, done_at=now, outcome=f"merged into {target.reference}")
    )
    session.add_all(
        [
            new_event(
                source, staff, MERGED_INTO, {"into": target.reference, "messages": count}, now
            ),
            new_event(target, staff, MERGED, {"from": source.reference, "messages": count}, now),
        ]
    )
    source.updated_at = target.updated_at = now
    await session.flush()
    return TicketMerge(source.reference, target.reference, count)


# Merging contacts


@dataclass(frozen=True, slots=True)
class ContactMerge:
    """What a contact merge did: the contact kept, and the tickets that now belong to it."""

    contact_id: int
    merged_id: int
    tickets: list[str]
    identities_moved: int


async def _tickets_of(session: AsyncSession, contact_id: int) -> list[Ticket]:
    return list(
        (
            await session.scalars(
                sa.select(Ticket)
                .where(col(Ticket.contact_id) == contact_id)
                .order_by(col(Ticket.id))
                .with_for_update()
            )
        ).all()
    )


def _check_contact_scope(staff: Staff, contact_id: int, tickets: Sequence[Ticket]) -> None:
    """Agents may merge only contacts whose every ticket lies in their departments.

    A contact an agent sees no ticket of is "not found" to them, like one that does not exist.
    """
    if staff.sees_all:
        return
    visible = [t for t in tickets if staff.can_see(t.department)]
    if not visible:
        raise NotFoundError("not_found", f"no contact {contact_id}")
    if len(visible) < len(tickets):
        raise ForbiddenError(
            "forbidden",
            "this citizen has tickets outside your departments; ask an admin or operator",
            {"contact_id": contact_id},
        )


async def merge_contacts(
    session: AsyncSession, staff: Staff, keep_id: int, other_id: int
) -> ContactMerge:
    """Make two contacts one citizen: ``other_id``'s identities, tickets and contact events move
    to ``keep_id``, and the other contact is deleted.

    The kept contact keeps its name and language; it takes the other's where it has none. A
    citizen who asked for no more surveys on either stays asked. Every ticket of both gets a
    ``contact_merged`` event. Afterwards every identity of both leads to the kept contact.

    Raises:
        NotFoundError: no such contact (or, for an agent, one without a ticket they can see).
        ForbiddenError: an agent, and a ticket of either contact lies outside their departments.
        UnprocessableError: ``same_contact``.
    """
    if keep_id == other_id:
        raise UnprocessableError("same_contact", "a contact cannot be merged with itself")
    contacts: dict[int, Contact] = {}
    for contact_id in sorted((keep_id, other_id)):
        found = (
            await session.scalars(
                sa.select(Contact).where(col(Contact.id) == contact_id).with_for_update()
            )
        ).first()
        if found is None:
            raise NotFoundError("not_found", f"no contact {contact_id}")
        contacts[contact_id] = found
    keep, other = contacts[keep_id], contacts[other_id]
    keep_tickets, other_tickets = (
        await _tickets_of(session, keep_id),
        await _tickets_of(session, other_id),
    )
    _check_contact_scope(staff, keep_id, keep_tickets)
    _check_contact_scope(staff, other_id, other_tickets)
    identities = (
        await session.scalars(
            sa.select(ContactIdentity)
            .where(col(ContactIdentity.contact_id) == other_id)
            .order_by(col(ContactIdentity.id))
        )
    ).all()
    # (kind, value) is unique over all contacts, so the moved identities cannot clash with the
    # kept contact's own.
    for identity in identities:
        identity.contact_id = keep_id
    for ticket in other_tickets:
        ticket.contact_id = keep_id
    await session.execute(
        sa.update(ContactEvent)
        .where(col(ContactEvent.contact_id) == other_id)
        .values(contact_id=keep_id)
    )
    keep.display_name = keep.display_name or other.display_name
    keep.language = keep.language or other.language
    keep.no_surveys = keep.no_surveys or other.no_surveys
    keep.created_at = min(keep.created_at, other.created_at)
    now = utcnow()
    data: dict[str, object] = {
        "kept": keep_id,
        "merged": other_id,
        "merged_name": other.display_name,
        "identities": [f"{i.kind}:{i.value}" for i in identities],
    }
    for ticket in [*keep_tickets, *other_tickets]:
        session.add(new_event(ticket, staff, CONTACT_MERGED, data, now))
        ticket.updated_at = now
    # The rows pointing at the other contact are updated before it goes.
    await session.flush()
    await session.delete(other)
    await session.flush()
    everything = sorted([*keep_tickets, *other_tickets], key=lambda t: t.created_at)
    return ContactMerge(
        contact_id=keep_id,
        merged_id=other_id,
        tickets=[t.reference for t in everything],
        identities_moved=len(identities),
    )
