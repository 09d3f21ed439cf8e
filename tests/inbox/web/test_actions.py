"""Work actions on the ticket page of the web inbox: forms that assign, transfer, change kind,
priority, tags and status, and merge tickets and citizens.

The whole service in-process (``town`` from tests/inbox/web/conftest.py), SQLite and PostgreSQL;
tickets arrive through the real intake. Every form posts with the CSRF token and answers with a
redirect back (POST, redirect, GET); the notice or the error shows on the page that follows.
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlmodel import col

from ingest.model import Channel, ThreadHints
from meldpunt.app import RUNTIME
from store.models import Contact, ContactIdentity, Message, Ticket, TicketEvent
from tests.inbox.web.conftest import Town, Visitor
from tests.messages import inbound

OPENING_HOURS = "Wanneer is het gemeentehuis open op zaterdag?"


async def ticket_row(town: Town, reference: str) -> Ticket:
    async with town.db.session() as session:
        ticket = (
            await session.scalars(sa.select(Ticket).where(col(Ticket.reference) == reference))
        ).one()
        return ticket


async def events(town: Town, reference: str) -> list[TicketEvent]:
    ticket = await ticket_row(town, reference)
    async with town.db.session() as session:
        return list(
            (
                await session.scalars(
                    sa.select(TicketEvent)
                    .where(col(TicketEvent.ticket_id) == ticket.id)
                    .order_by(col(TicketEvent.id))
                )
            ).all()
        )


async def act(
    visitor: Visitor, reference: str, action: str, **fields: str
) -> tuple[int, str | None]:
    """Post a work action from the ticket page as a browser would; the status and the place the
    redirect leads to. The page that follows is then read into ``visitor.html``."""
    await visitor.get(f"/tickets/{reference}")
    response = await visitor.post(
        f"/tickets/{reference}/actions/{action}", {"csrf": visitor.csrf(), **fields}
    )
    location = response.headers.get("Location")
    if response.status == 303 and location:
        await visitor.get(location.split("#")[0])
    return response.status, location


async def test_assign_to_me_to_a_colleague_and_to_nobody(town: Town) -> None:
    reference = await town.submit(OPENING_HOURS, "Openingsuren", "mie@example.be")
    await town.add_user("bart@wingene.example", name="Bart Desmet")
    await town.add_user("td@wingene.example", "agent", ("technical-service",), name="Tom Dienst")
    await town.add_user("beheer@wingene.example", "operator", (), name="Olga Beheer")
    an = await town.signed_in("an@wingene.example")

    status, location = await act(an, reference, "assign", assignee="me")
    assert (status, location) == (303, f"/tickets/{reference}#acties")
    assert an.notice() == "Het ticket is toegewezen aan An Peeters."
    assert re.search(r'class="actions-assignee">An Peeters<', an.html)
    # Colleagues of the ticket's department and the operator are offered; Tom of the technical
    # service is not.
    assert ">Bart Desmet</option>" in an.html
    assert ">Olga Beheer</option>" in an.html
    assert "Tom Dienst" not in an.html

    # Posting Tom's id by hand is refused, and nothing changes.
    async with town.db.session() as session:
        tom = await session.scalar(
            sa.text("SELECT id FROM users WHERE email = 'td@wingene.example'")
        )
        bart = await session.scalar(
            sa.text("SELECT id FROM users WHERE email = 'bart@wingene.example'")
        )
    await act(an, reference, "assign", assignee=str(tom))
    assert an.error() == "Die persoon kan dit ticket niet krijgen: kies iemand van de dienst."
    assert an.notice() is None
    me = (await ticket_row(town, reference)).assignee_id
    assert me is not None and me != tom

    await act(an, reference, "assign", assignee=str(bart))
    assert an.notice() == "Het ticket is toegewezen aan Bart Desmet."
    assert (await ticket_row(town, reference)).assignee_id == bart
    await act(an, reference, "assign", assignee="none")
    assert an.notice() == "Het ticket is aan niemand toegewezen."
    assert (await ticket_row(town, reference)).assignee_id is None

    # The forms speak French and English too.
    await an.get(f"/tickets/{reference}?lang=fr")
    assert "Transférer à un autre service" in an.html
    await an.get(f"/tickets/{reference}?lang=en")
    assert "Merge a duplicate ticket" in an.html
    await an.get(f"/tickets/{reference}?lang=nl")

    # Each change is in the history, with who did it.
    assigned = [e for e in await events(town, reference) if e.type == "assigned"]
    assert [(e.data["to"], e.actor_user_id) for e in assigned] == [
        (me, me),
        (bart, me),
        (None, me),
    ]


async def test_a_transfer_needs_a_reason_and_then_leaves_the_agents_sight(town: Town) -> None:
    reference = await town.submit(OPENING_HOURS, "Openingsuren", "mie@example.be")
    await town.add_user("els@wingene.example", "agent", ("environment",), name="Els Claes")
    an = await town.signed_in("an@wingene.example")

    status, _ = await act(an, reference, "transfer", department="environment", reason="  ")
    assert status == 422
    assert an.error() == "Geef een reden."
    assert (await ticket_row(town, reference)).department == "front-desk"

    reason = "Gaat over het containerpark, dat is Milieu."
    status, location = await act(an, reference, "transfer", department="environment", reason=reason)
    # Not back to a page the agent may no longer see, but to the list, which says so.
    assert (status, location) == (303, "/")
    assert an.notice() == (
        f"Ticket {reference} is doorgestuurd naar Milieu en afval. U ziet het niet meer."
    )
    assert f"/tickets/{reference}" not in an.html
    assert (await an.get(f"/tickets/{reference}")).status == 404
    # The notice is shown once.
    await an.get("/")
    assert an.notice() is None

    els = await town.signed_in("els@wingene.example")
    assert (await els.get(f"/tickets/{reference}")).status == 200
    assert "Onthaal" in els.html and reason in els.html
    [transfer] = [e for e in await events(town, reference) if e.type == "transferred"]
    assert transfer.data == {"from": "front-desk", "to": "environment", "reason": reason}


async def test_forms_without_the_sessions_csrf_token_change_nothing(town: Town) -> None:
    reference = await town.submit(OPENING_HOURS, "Openingsuren", "mie@example.be")
    an = await town.signed_in("an@wingene.example")
    for token in ({}, {"csrf": "not-the-token"}):
        response = await an.post(
            f"/tickets/{reference}/actions/transfer",
            {**token, "department": "environment", "reason": "weg ermee"},
        )
        assert response.status == 403
    stranger = town.visitor()
    response = await stranger.post(
        f"/tickets/{reference}/actions/assign", {"csrf": "x", "assignee": "none"}
    )
    assert response.status == 403
    ticket = await ticket_row(town, reference)
    assert ticket.department == "front-desk"
    assert not [e for e in await events(town, reference) if e.type == "transferred"]


async def test_an_agent_cannot_act_on_or_merge_with_another_departments_ticket(
    town: Town,
) -> None:
    own = await town.submit(OPENING_HOURS, "Openingsuren", "mie@example.be")
    waste = await town.submit("De vuilniszakken zijn niet opgehaald.", "Afval", "jan@example.be")
    an = await town.signed_in("an@wingene.example")
    await an.get(f"/tickets/{own}")
    csrf = an.csrf()
    for action, fields in (
        ("assign", {"assignee": "me"}),
        ("transfer", {"department": "front-desk", "reason": "bij mij"}),
        ("details", {"kind": "complaint", "priority": "urgent", "tags": "x"}),
        ("status", {"status": "closed", "reason": "weg"}),
        ("merge", {"into": own}),
        ("merge-contact", {"other": own}),
    ):
        response = await an.post(f"/tickets/{waste}/actions/{action}", {"csrf": csrf, **fields})
        assert response.status == 404, action
        assert "vuilniszak" not in an.html
    # Naming the other department's ticket from one's own: "no ticket you may see", exactly as
    # for a reference that does not exist.
    for action, field in (("merge", "into"), ("merge-contact", "other")):
        await act(an, own, action, **{field: waste})
        assert an.error() == f"Geen ticket {waste} gevonden dat u mag zien."
        await act(an, own, action, **{field: "1750-999999"})
        assert an.error() == "Geen ticket 1750-999999 gevonden dat u mag zien."
    waste_row, own_row = await ticket_row(town, waste), await ticket_row(town, own)
    assert (waste_row.status, waste_row.department, waste_row.assignee_id) == (
        "new",
        "environment",
        None,
    )
    assert own_row.status == "new" and own_row.contact_id != waste_row.contact_id
    async with town.db.session() as session:
        on_waste = await session.scalar(
            sa.select(sa.func.count()).where(col(Message.ticket_id) == waste_row.id)
        )
    assert on_waste == 2  # the citizen's message and the acknowledgement, nothing more


async def test_kind_priority_tags_and_status_with_clear_errors(town: Town) -> None:
    reference = await town.submit(OPENING_HOURS, "Openingsuren", "mie@example.be")
    an = await town.signed_in("an@wingene.example")

    await act(
        an,
        reference,
        "details",
        kind="complaint",
        priority="high",
        tags=" Verlichting, kerkstraat ,VERLICHTING,, Kerk  straat",
    )
    assert an.notice() == "Soort, prioriteit en labels zijn opgeslagen."
    ticket = await ticket_row(town, reference)
    assert (ticket.kind, ticket.priority) == ("complaint", "high")
    assert ticket.tags == ["verlichting", "kerkstraat", "kerk straat"]
    assert 'value="verlichting, kerkstraat, kerk straat"' in an.html
    await act(an, reference, "details", kind="complaint", priority="high", tags="nonsense")
    await act(an, reference, "details", kind="complaint", priority="high", tags="nonsense")
    assert an.error() == "Er is niets gewijzigd: dat was al zo."
    await act(an, reference, "details", kind="complaint", priority="<b>", tags="x")
    assert an.error() == "Kies een waarde uit de lijst."
    types = [e.type for e in await events(town, reference)]
    assert types.count("kind_changed") == 1
    assert types.count("priority_changed") == 1
    assert types.count("tags_changed") == 2

    # Resolving without an answer needs a reason: the error says so and the choice stays.
    await act(an, reference, "status", status="resolved", reason="")
    assert (an.error() or "").startswith("Geef een reden om af te handelen of te sluiten")
    assert '<option value="resolved" selected>' in an.html
    assert (await ticket_row(town, reference)).status == "new"
    await act(an, reference, "status", status="resolved", reason="Telefonisch beantwoord.")
    assert an.notice() == "De status is nu: afgehandeld."
    assert (await ticket_row(town, reference)).status == "resolved"
    # Only the moves the rules allow are offered; a closed ticket cannot be reopened by an agent.
    await act(an, reference, "status", status="closed", reason="")
    assert (await ticket_row(town, reference)).status == "closed"
    assert "De status kan nu niet gewijzigd worden." in an.html
    await act(an, reference, "status", status="open", reason="")
    assert an.error() == "Alleen een beheerder of operator kan een gesloten ticket heropenen."
    assert (await ticket_row(town, reference)).status == "closed"


async def test_merging_a_duplicate_moves_its_messages_and_mail_threads_on(town: Town) -> None:
    intake = town.client.app[RUNTIME].intake
    first = await intake.submit(
        inbound(
            "De straatlamp voor nummer 12 brandt niet.",
            subject="Straatlamp",
            channel=Channel.EMAIL,
            email="mie@example.be",
            external_id="<lamp-1@example.be>",
        )
    )
    second = await intake.submit(
        inbound(
            "Nog eens: de lamp aan nummer 12 is stuk.",
            subject="Lamp nummer 12",
            channel=Channel.EMAIL,
            email="mie@example.be",
            external_id="<lamp-2@example.be>",
        )
    )
    duplicate, keeper = second.ticket_reference, first.ticket_reference
    assert duplicate and keeper and duplicate != keeper
    await town.add_user("td@wingene.example", "agent", ("technical-service",))
    td = await town.signed_in("td@wingene.example")

    status, location = await act(td, duplicate, "merge", into=keeper.lower())
    assert (status, location) == (303, f"/tickets/{keeper}")
    assert td.notice() == f"{duplicate} is samengevoegd met dit ticket (2 berichten)."
    assert "Nog eens: de lamp aan nummer 12 is stuk." in td.html
    assert "De straatlamp voor nummer 12 brandt niet." in td.html

    await td.get(f"/tickets/{duplicate}")
    assert f'Dit ticket is samengevoegd met ticket <a href="/tickets/{keeper}">{keeper}</a>' in (
        td.html
    )
    assert (await ticket_row(town, duplicate)).status == "closed"
    # Merging it again is refused with a clear word.
    await act(td, duplicate, "merge", into=keeper)
    assert td.error() == f"Dit ticket is al samengevoegd met {keeper}."

    # The citizen answers the duplicate's mail: it joins the ticket that holds everything now.
    answer = await intake.submit(
        inbound(
            "Ze brandt nog altijd niet.",
            subject="Re: Lamp nummer 12",
            channel=Channel.EMAIL,
            email="mie@example.be",
            hints=ThreadHints(message_ids=("<lamp-2@example.be>",)),
        )
    )
    assert answer.ticket_reference == keeper


async def test_merging_two_citizens_who_are_one_person(town: Town) -> None:
    intake = town.client.app[RUNTIME].intake
    by_mail = await town.submit(OPENING_HOURS, "Openingsuren", "mie@example.be")
    by_sms = (
        await intake.submit(
            inbound(
                "Is het gemeentehuis zaterdag open?",
                subject=None,
                channel=Channel.SMS,
                email=None,
                phone="+32470111222",
            )
        )
    ).ticket_reference
    assert by_sms is not None
    an = await town.signed_in("an@wingene.example")

    await act(an, by_mail, "merge-contact", other=by_sms)
    assert an.notice() == "De burgers zijn samengevoegd (2 tickets)."
    assert "+32470111222" in an.html and "mie@example.be" in an.html
    mail_ticket, sms_ticket = await ticket_row(town, by_mail), await ticket_row(town, by_sms)
    assert mail_ticket.contact_id == sms_ticket.contact_id
    async with town.db.session() as session:
        contacts = (await session.scalars(sa.select(Contact))).all()
        identities = (await session.scalars(sa.select(ContactIdentity))).all()
    assert [c.id for c in contacts] == [mail_ticket.contact_id]
    assert {(i.kind, i.value, i.contact_id) for i in identities} == {
        ("email", "mie@example.be", mail_ticket.contact_id),
        ("phone", "+32470111222", mail_ticket.contact_id),
    }
    for reference in (by_mail, by_sms):
        assert "contact_merged" in [e.type for e in await events(town, reference)]
    # A later text from the phone number belongs to the one citizen.
    later = await intake.submit(
        inbound(
            "Ik heb een nieuwe identiteitskaart nodig.",
            subject=None,
            channel=Channel.SMS,
            email=None,
            phone="+32470111222",
        )
    )
    assert later.ticket_reference is not None
    assert (await ticket_row(town, later.ticket_reference)).contact_id == mail_ticket.contact_id
