"""The work functions of ``inbox.work``: assign, kind/priority/tags, merging tickets and contacts.

On SQLite and PostgreSQL (``database``), tickets seeded by ``make_ticket`` from
tests/inbox/conftest.py. The merges are checked for what matters to staff: everything moves,
nothing is lost or doubled, identities stay unique, timers of a merged ticket stop, and nobody
reaches beyond their departments.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import TypeVar

import pytest
import sqlalchemy as sa
from sqlmodel import SQLModel, col

from inbox import work
from inbox.auth import Staff
from inbox.errors import ConflictError, ForbiddenError, NotFoundError, UnprocessableError
from ingest.model import Channel, InboundMessage, Kind, Priority, ThreadHints
from ingest.pipeline import Intake, IntakePolicy
from store.db import Database
from store.models import (
    AttachmentRow,
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
from store.users import create_user
from tests.conftest import Clock
from tests.inbox.conftest import Api, MakeTicket, Seeded
from tests.messages import inbound, sample_rules

M = TypeVar("M", bound=SQLModel)

DEPARTMENTS = {"technical": "Technische dienst", "environment": "Milieu en afval"}
AN = "an@example.be"


async def staff(database: Database, email: str, role: str, departments: list[str]) -> Staff:
    async with database.session() as session:
        user = await create_user(session, email, role, departments, None, name=email.split("@")[0])
        return Staff.from_user(user)


@pytest.fixture
async def admin(database: Database) -> Staff:
    return await staff(database, "admin@town.test", "admin", [])


@pytest.fixture
async def tech(database: Database) -> Staff:
    return await staff(database, "tech@town.test", "agent", ["technical"])


async def ticket(database: Database, reference: str) -> Ticket:
    async with database.session() as session:
        return (
            await session.scalars(sa.select(Ticket).where(col(Ticket.reference) == reference))
        ).one()


async def all_of(database: Database, model: type[M], *where: sa.ColumnElement[bool]) -> list[M]:
    """The rows of ``model`` matching ``where``, by id."""
    async with database.session() as session:
        query = sa.select(model).where(*where).order_by(sa.text("id"))
        return list((await session.scalars(query)).all())


async def event_types(database: Database, ticket_id: int) -> list[str]:
    found = await all_of(database, TicketEvent, col(TicketEvent.ticket_id) == ticket_id)
    return [e.type for e in found]


# Assigning


async def test_assign_only_to_colleagues_of_the_department_or_admins(
    database: Database, admin: Staff, tech: Staff, make_ticket: MakeTicket
) -> None:
    seeded = await make_ticket(department="technical")
    other = await staff(database, "env@town.test", "agent", ["environment"])
    colleague = await staff(database, "tech2@town.test", "agent", ["technical"])
    async with database.session() as session:
        names = [c.email for c in await work.colleagues(session, "technical")]
    assert names == ["admin@town.test", "tech@town.test", "tech2@town.test"]

    async with database.session() as session:
        await work.assign(session, tech, seeded.reference, tech.id)
    with pytest.raises(UnprocessableError) as refused:
        async with database.session() as session:
            await work.assign(session, tech, seeded.reference, other.id)
    assert refused.value.code == "not_assignable"
    with pytest.raises(ConflictError):
        async with database.session() as session:
            await work.assign(session, tech, seeded.reference, tech.id)
    async with database.session() as session:
        await work.assign(session, tech, seeded.reference, admin.id)
        await work.assign(session, admin, seeded.reference, colleague.id)
    # A deactivated colleague is no longer offered nor accepted.
    async with database.session() as session:
        user = await session.get_one(User, colleague.id)
        user.active = False
    with pytest.raises(UnprocessableError):
        async with database.session() as session:
            await work.assign(session, admin, seeded.reference, colleague.id)
    # The other department's agent cannot even see the ticket.
    with pytest.raises(NotFoundError):
        async with database.session() as session:
            await work.assign(session, other, seeded.reference, None)

    events = await all_of(database, TicketEvent, col(TicketEvent.type) == work.ASSIGNED)
    assert [(e.data["to"], e.actor_user_id) for e in events] == [
        (tech.id, tech.id),
        (admin.id, tech.id),
        (colleague.id, admin.id),
    ]
    assert (await ticket(database, seeded.reference)).assignee_id == colleague.id


# Kind, priority and tags


def test_tags_are_trimmed_lower_case_and_unique() -> None:
    assert work.normalise_tags(" Verlichting,KERKSTRAAT , verlichting,,  Kerk   straat ") == [
        "verlichting",
        "kerkstraat",
        "kerk straat",
    ]
    assert work.normalise_tags("") == []
    with pytest.raises(UnprocessableError):
        work.normalise_tags(",".join(f"t{n}" for n in range(work.MAX_TAGS + 1)))
    with pytest.raises(UnprocessableError):
        work.normalise_tags("x" * (work.MAX_TAG_LENGTH + 1))


async def test_details_change_with_one_event_per_change(
    database: Database, tech: Staff, make_ticket: MakeTicket
) -> None:
    seeded = await make_ticket(department="technical")
    async with database.session() as session:
        await work.change_details(
            session, tech, seeded.reference, kind=Kind.COMPLAINT, tags=["Lamp", "lamp", "Straat"]
        )
    with pytest.raises(ConflictError):
        async with database.session() as session:
            await work.change_details(
                session, tech, seeded.reference, kind=Kind.COMPLAINT, priority=Priority.NORMAL
            )
    async with database.session() as session:
        await work.change_details(session, tech, seeded.reference, priority=Priority.URGENT)
    row = await ticket(database, seeded.reference)
    assert (row.kind, row.priority, row.tags) == ("complaint", "urgent", ["lamp", "straat"])
    types = await event_types(database, seeded.ticket_id)
    assert types == ["created", "kind_changed", "tags_changed", "priority_changed"]


# Merging tickets


async def add_message(
    database: Database, seeded: Seeded, text: str, minutes: int, external_id: str | None = None
) -> int:
    async with database.session() as session:
        message = Message(
            ticket_id=seeded.ticket_id,
            direction="in",
            channel="sms",
            text=text,
            delivery_status="received",
            created_at=utcnow() - timedelta(minutes=minutes),
            external_id=external_id,
        )
        session.add(message)
        await session.flush()
        assert message.id is not None
        return message.id


async def add_timer(database: Database, ticket_id: int, kind: str, state: str) -> None:
    async with database.session() as session:
        session.add(
            Timer(
                ticket_id=ticket_id,
                kind=kind,
                due_at=utcnow() + timedelta(hours=4),
                state=state,
                created_at=utcnow(),
            )
        )


async def test_merging_moves_every_message_in_order_and_stops_the_duplicates_timers(
    database: Database, tech: Staff, make_ticket: MakeTicket
) -> None:
    # The keeper came first (an hour ago); the duplicate has a later message with a photo and an
    # answer still waiting in the outbox.
    keeper = await make_ticket(department="technical", text="Lamp 12 is stuk.")
    duplicate = await make_ticket(
        department="technical",
        text="Nog eens: lamp 12.",
        created_at=utcnow() - timedelta(minutes=50),
    )
    between = await add_message(database, keeper, "Ze flikkert nu ook.", 40)
    photo = await add_message(database, duplicate, "Hier is een foto.", 30)
    later = await add_message(database, keeper, "Nog altijd stuk.", 20)
    answer = await add_message(database, duplicate, "We kijken ernaar.", 10, external_id="SM1")
    async with database.session() as session:
        session.add(
            AttachmentRow(message_id=photo, filename="lamp.jpg", content_type="image/jpeg", size=3)
        )
        session.add(
            OutboxRow(
                message_id=answer,
                ticket_id=duplicate.ticket_id,
                purpose="reply",
                channel="sms",
                recipient="+32470000002",
                body="We kijken ernaar.",
                state="pending",
                next_attempt_at=utcnow(),
                created_at=utcnow(),
            )
        )
        session.add(
            ContactEvent(
                contact_id=duplicate.contact_id,
                channel="voice",
                type="call_answered",
                external_id="CA1",
                created_at=utcnow(),
                ticket_id=duplicate.ticket_id,
            )
        )
        dup = await session.get_one(Ticket, duplicate.ticket_id)
        dup.tags = ["verlichting", "foto"]
        kept = await session.get_one(Ticket, keeper.ticket_id)
        kept.tags = ["verlichting"]
    await add_timer(database, duplicate.ticket_id, "first_answer_due", "pending")
    await add_timer(database, duplicate.ticket_id, "first_answer_warning", "done")
    await add_timer(database, keeper.ticket_id, "first_answer_due", "pending")
    messages_before = len(await all_of(database, Message))

    async with database.session() as session:
        merged = await work.merge_tickets(
            session, tech, DEPARTMENTS, duplicate.reference, keeper.reference
        )
    assert merged == work.TicketMerge(duplicate.reference, keeper.reference, 3)

    # Nothing lost, nothing doubled: every message is on the keeper, interleaved by time.
    assert len(await all_of(database, Message)) == messages_before
    on_keeper = await all_of(database, Message, col(Message.ticket_id) == keeper.ticket_id)
    in_order = sorted(on_keeper, key=lambda m: (m.created_at, m.id))
    assert [m.text for m in in_order] == [
        "Lamp 12 is stuk.",
        "Nog eens: lamp 12.",
        "Ze flikkert nu ook.",
        "Hier is een foto.",
        "Nog altijd stuk.",
        "We kijken ernaar.",
    ]
    assert {between, photo, later, answer} <= {m.id for m in on_keeper}
    assert not await all_of(database, Message, col(Message.ticket_id) == duplicate.ticket_id)
    [attachment] = await all_of(database, AttachmentRow)
    assert attachment.message_id == photo
    [outbox] = await all_of(database, OutboxRow)
    assert (outbox.ticket_id, outbox.message_id) == (keeper.ticket_id, answer)
    [call] = await all_of(database, ContactEvent)
    assert call.ticket_id == keeper.ticket_id

    source, target = (
        await ticket(database, duplicate.reference),
        await ticket(database, keeper.reference),
    )
    assert source.status == "closed" and target.status == "new"
    assert target.tags == ["verlichting", "foto"]
    assert await event_types(database, duplicate.ticket_id) == [
        "created",
        "status_changed",
        "merged_into",
    ]
    assert (await event_types(database, keeper.ticket_id))[-1] == "merged"
    async with database.session() as session:
        assert await work.merged_into(session, duplicate.ticket_id) == keeper.reference
        assert await work.merged_into(session, keeper.ticket_id) is None
    timers = {(t.ticket_id, t.kind): (t.state, t.outcome) for t in await all_of(database, Timer)}
    assert timers == {
        (duplicate.ticket_id, "first_answer_due"): ("cancelled", f"merged into {keeper.reference}"),
        (duplicate.ticket_id, "first_answer_warning"): ("done", None),
        (keeper.ticket_id, "first_answer_due"): ("pending", None),
    }


async def test_a_conversation_moves_to_the_keeper_of_the_same_citizen_only(
    database: Database, admin: Staff, make_ticket: MakeTicket
) -> None:
    keeper = await make_ticket(identities=[("phone", "+32470999001")])
    duplicate = await make_ticket()
    stranger = await make_ticket()
    async with database.session() as session:
        for seeded, conversation in ((duplicate, "sms:a"), (stranger, "sms:b")):
            row = await session.get_one(Ticket, seeded.ticket_id)
            row.conversation = conversation
        dup = await session.get_one(Ticket, duplicate.ticket_id)
        dup.contact_id = keeper.contact_id
    async with database.session() as session:
        await work.merge_tickets(session, admin, DEPARTMENTS, duplicate.reference, keeper.reference)
    assert (await ticket(database, keeper.reference)).conversation == "sms:a"
    assert (await ticket(database, duplicate.reference)).conversation is None
    # Another citizen's conversation stays where it was: intake matches it with their contact.
    async with database.session() as session:
        await work.merge_tickets(session, admin, DEPARTMENTS, stranger.reference, keeper.reference)
    assert (await ticket(database, keeper.reference)).conversation == "sms:a"
    assert (await ticket(database, stranger.reference)).conversation == "sms:b"


async def test_merging_stays_within_what_staff_may_see_and_is_done_once(
    database: Database, admin: Staff, tech: Staff, make_ticket: MakeTicket
) -> None:
    mine = await make_ticket(department="technical")
    theirs = await make_ticket(department="environment")
    third = await make_ticket(department="technical")
    for source, target in ((mine, theirs), (theirs, mine)):
        with pytest.raises(NotFoundError):
            async with database.session() as session:
                await work.merge_tickets(
                    session, tech, DEPARTMENTS, source.reference, target.reference
                )
    with pytest.raises(UnprocessableError):
        async with database.session() as session:
            await work.merge_tickets(session, tech, DEPARTMENTS, mine.reference, mine.reference)
    # Nothing moved.
    for seeded in (mine, theirs):
        on_it = await all_of(database, Message, col(Message.ticket_id) == seeded.ticket_id)
        assert len(on_it) == 1
        assert (await ticket(database, seeded.reference)).status == "new"

    # An admin sees both departments.
    async with database.session() as session:
        await work.merge_tickets(session, admin, DEPARTMENTS, theirs.reference, mine.reference)
    with pytest.raises(ConflictError) as again:
        async with database.session() as session:
            await work.merge_tickets(session, admin, DEPARTMENTS, theirs.reference, third.reference)
    assert (again.value.code, again.value.details) == ("already_merged", {"into": mine.reference})
    with pytest.raises(ConflictError) as into_merged:
        async with database.session() as session:
            await work.merge_tickets(session, admin, DEPARTMENTS, third.reference, theirs.reference)
    assert into_merged.value.code == "target_merged"


# Merging contacts


async def test_merging_contacts_moves_identities_tickets_and_events(
    database: Database, tech: Staff, make_ticket: MakeTicket
) -> None:
    by_sms = await make_ticket(department="technical")
    by_mail = await make_ticket(
        department="technical",
        channel="email",
        reply_channel="email",
        identities=[("email", "mie@example.be"), ("webchat", "visitor-7")],
    )
    async with database.session() as session:
        kept = await session.get_one(Contact, by_sms.contact_id)
        kept.display_name, kept.language = None, None
        other = await session.get_one(Contact, by_mail.contact_id)
        other.display_name, other.language, other.no_surveys = "Mie Peeters", "fr", True
        session.add(
            ContactEvent(
                contact_id=by_mail.contact_id,
                channel="voice",
                type="call_answered",
                external_id="CA7",
                created_at=utcnow(),
            )
        )
    identities_before = len(await all_of(database, ContactIdentity))

    async with database.session() as session:
        merged = await work.merge_contacts(session, tech, by_sms.contact_id, by_mail.contact_id)
    assert merged.contact_id == by_sms.contact_id
    assert sorted(merged.tickets) == sorted([by_sms.reference, by_mail.reference])
    assert merged.identities_moved == 2

    identities = await all_of(database, ContactIdentity)
    assert len(identities) == identities_before
    assert {i.contact_id for i in identities} == {by_sms.contact_id}
    assert len({(i.kind, i.value) for i in identities}) == len(identities)
    [contact] = await all_of(database, Contact)
    assert (contact.id, contact.display_name, contact.language, contact.no_surveys) == (
        by_sms.contact_id,
        "Mie Peeters",
        "fr",
        True,
    )
    for seeded in (by_sms, by_mail):
        assert (await ticket(database, seeded.reference)).contact_id == by_sms.contact_id
        assert (await event_types(database, seeded.ticket_id))[-1] == "contact_merged"
    [event] = await all_of(database, ContactEvent)
    assert event.contact_id == by_sms.contact_id


async def test_an_agent_merges_only_citizens_whose_every_ticket_is_theirs(
    database: Database, admin: Staff, tech: Staff, make_ticket: MakeTicket
) -> None:
    mine = await make_ticket(department="technical")
    mixed = await make_ticket(department="technical")
    elsewhere = await make_ticket(department="environment")
    async with database.session() as session:
        # The mixed citizen also wrote to environment.
        row = await session.get_one(Ticket, elsewhere.ticket_id)
        second = Ticket(**{**row.model_dump(exclude={"id"}), "reference": "MP-2026-99999"})
        second.contact_id = mixed.contact_id
        session.add(second)
        loner = Contact(display_name="Zonder ticket", created_at=utcnow())
        session.add(loner)
        await session.flush()
        assert loner.id is not None
    for other, error in (
        (mixed.contact_id, ForbiddenError),
        (elsewhere.contact_id, NotFoundError),
        (loner.id, NotFoundError),
        (123456, NotFoundError),
    ):
        with pytest.raises(error):
            async with database.session() as session:
                await work.merge_contacts(session, tech, mine.contact_id, other)
        with pytest.raises(error):
            async with database.session() as session:
                await work.merge_contacts(session, tech, other, mine.contact_id)
    with pytest.raises(UnprocessableError):
        async with database.session() as session:
            await work.merge_contacts(session, tech, mine.contact_id, mine.contact_id)
    assert len(await all_of(database, Contact)) == 4
    # An admin or operator may, whatever the departments.
    async with database.session() as session:
        merged = await work.merge_contacts(session, admin, mine.contact_id, mixed.contact_id)
    assert len(merged.tickets) == 3
    assert len(await all_of(database, Contact)) == 3


# The same over the API


async def test_the_api_assigns_changes_details_and_merges_within_scope(
    api: Api, make_ticket: MakeTicket
) -> None:
    lamp = await make_ticket(department="technical")
    again = await make_ticket(department="technical")
    waste = await make_ticket(department="environment")
    _, me = await api.get("/me", "agent")
    _, env = await api.get("/me", "env_agent")

    status, body = await api.post(
        f"/tickets/{lamp.reference}/assign", {"assignee_id": me["id"]}, "agent"
    )
    assert (status, body["reference"]) == (200, lamp.reference)
    status, body = await api.post(
        f"/tickets/{lamp.reference}/assign", {"assignee_id": env["id"]}, "agent"
    )
    assert (status, body["error"]["code"]) == (422, "not_assignable")
    status, body = await api.post(
        f"/tickets/{waste.reference}/assign", {"assignee_id": None}, "agent"
    )
    assert status == 404

    status, body = await api.post(
        f"/tickets/{lamp.reference}/details",
        {"priority": "high", "tags": ["Lamp", " lamp "]},
        "agent",
    )
    assert (status, body["priority"], body["tags"]) == (200, "high", ["lamp"])
    status, body = await api.post(
        f"/tickets/{lamp.reference}/details", {"priority": "high"}, "agent"
    )
    assert (status, body["error"]["code"]) == (409, "unchanged")

    # Another department's ticket is not there for the agent, either way round.
    for source, target in ((lamp, waste), (waste, lamp)):
        status, _ = await api.post(
            f"/tickets/{source.reference}/merge", {"into": target.reference}, "agent"
        )
        assert status == 404
    status, body = await api.post(
        f"/tickets/{again.reference}/merge", {"into": lamp.reference}, "agent"
    )
    assert (status, body) == (
        200,
        {"source": again.reference, "target": lamp.reference, "messages": 1},
    )
    _, merged = await api.get(f"/tickets/{again.reference}", "agent")
    assert merged["status"] == "closed"
    assert [e["type"] for e in merged["events"]][-1] == "merged_into"
    _, kept = await api.get(f"/tickets/{lamp.reference}", "agent")
    assert len(kept["messages"]) == 2


async def test_the_api_merges_contacts_for_agents_only_within_their_departments(
    api: Api, make_ticket: MakeTicket
) -> None:
    lamp = await make_ticket(department="technical")
    other = await make_ticket(department="technical")
    waste = await make_ticket(department="environment")
    status, body = await api.post(
        f"/contacts/{lamp.contact_id}/merge", {"contact_id": waste.contact_id}, "agent"
    )
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, body = await api.post(
        f"/contacts/{lamp.contact_id}/merge", {"contact_id": other.contact_id}, "agent"
    )
    assert status == 200
    assert body == {
        "contact_id": lamp.contact_id,
        "merged_id": other.contact_id,
        "tickets": [lamp.reference, other.reference],
        "identities_moved": 1,
    }
    # Now the citizen has a ticket outside the environment agent's department as well.
    status, body = await api.post(
        f"/contacts/{waste.contact_id}/merge", {"contact_id": lamp.contact_id}, "env_agent"
    )
    assert status == 404
    status, body = await api.post(
        f"/contacts/{waste.contact_id}/merge", {"contact_id": lamp.contact_id}, "operator"
    )
    assert status == 200 and len(body["tickets"]) == 3


# Intake after a merge: the citizen still quotes the duplicate's reference


@pytest.fixture
async def intake(database: Database, clock: Clock) -> AsyncIterator[Intake]:
    rules = sample_rules()
    service = Intake(database.engine, lambda: rules, IntakePolicy(reference_prefix="MP"), clock)
    await service.start()
    yield service
    await service.stop()


async def reported(intake: Intake, message: InboundMessage) -> str:
    result = await intake.submit(message)
    assert result.ticket_reference is not None
    return result.ticket_reference


async def merge(database: Database, admin: Staff, source: str, target: str) -> None:
    async with database.session() as session:
        await work.merge_tickets(session, admin, DEPARTMENTS, source, target)


async def test_a_message_quoting_a_merged_tickets_reference_continues_on_the_keeper(
    database: Database, intake: Intake, admin: Staff, clock: Clock
) -> None:
    keeper = await reported(intake, inbound("De straatlamp aan nummer 12 is stuk.", email=AN))
    duplicate = await reported(intake, inbound("Lamp 12 in de Kerkstraat brandt niet.", email=AN))
    assert keeper != duplicate
    await merge(database, admin, duplicate, keeper)
    tickets_before = len(await all_of(database, Ticket))

    # The web form's "your reference" field, and a mail quoting it (typed in lower case).
    by_form = await intake.submit(
        inbound("Nog altijd donker.", email=AN, hints=ThreadHints(reference=duplicate))
    )
    by_mail = await intake.submit(
        inbound(
            "Hier is een foto.",
            channel=Channel.EMAIL,
            email=AN,
            kind=None,
            subject="Re: uw melding",
            hints=ThreadHints(reference=duplicate.lower()),
        )
    )
    assert (by_form.ticket_reference, by_form.new_ticket) == (keeper, False)
    assert (by_mail.ticket_reference, by_mail.new_ticket) == (keeper, False)
    assert len(await all_of(database, Ticket)) == tickets_before
    kept = await ticket(database, keeper)
    texts = [m.text for m in await all_of(database, Message, col(Message.ticket_id) == kept.id)]
    assert texts[-2:] == ["Nog altijd donker.", "Hier is een foto."]
    merged_away = await ticket(database, duplicate)
    assert merged_away.status == "closed"
    assert (await event_types(database, merged_away.id or 0))[-1] == "merged_into"

    # The keeper was resolved a moment ago: quoting the duplicate reopens the keeper.
    async with database.session() as session:
        row = await session.get_one(Ticket, kept.id)
        row.status, row.resolved_at = "resolved", clock()
    again = await intake.submit(
        inbound("Hij brandt weer niet!", email=AN, hints=ThreadHints(reference=duplicate))
    )
    assert (again.ticket_reference, again.new_ticket) == (keeper, False)
    assert (await ticket(database, keeper)).status == "open"

    # Someone else quoting the duplicate's reference still gets a ticket of their own.
    stranger = await intake.submit(
        inbound("Zelfde lamp.", email="jan@example.be", hints=ThreadHints(reference=duplicate))
    )
    assert stranger.new_ticket and stranger.ticket_reference not in (keeper, duplicate)


async def test_a_chain_of_merges_is_followed_to_its_end_and_its_rules(
    database: Database, intake: Intake, admin: Staff
) -> None:
    first = await reported(intake, inbound("Afval naast de glasbak.", email=AN))
    second = await reported(intake, inbound("Vuilniszakken aan de glasbak.", email=AN))
    last = await reported(intake, inbound("Weer afval bij de glasbak.", email=AN))
    await merge(database, admin, first, second)
    await merge(database, admin, second, last)

    followed = await intake.submit(
        inbound("Het ligt er nog.", email=AN, hints=ThreadHints(reference=first))
    )
    assert (followed.ticket_reference, followed.new_ticket) == (last, False)

    # The end of the chain is closed for good: a new ticket opens, following it (not the first).
    async with database.session() as session:
        row = (await session.scalars(sa.select(Ticket).where(col(Ticket.reference) == last))).one()
        row.status = "closed"
    later = await intake.submit(
        inbound("En nu nog altijd.", email=AN, hints=ThreadHints(reference=first))
    )
    assert later.new_ticket and later.ticket_reference not in (first, second, last)
    new = await ticket(database, later.ticket_reference or "")
    assert new.follows_id == (await ticket(database, last)).id
