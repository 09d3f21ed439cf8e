"""Staff settle an answer whose delivery is uncertain: "send again" or "it arrived", on the
ticket page and in the API.

The whole service in-process (``town`` from tests/inbox/web/conftest.py), SQLite and PostgreSQL.
The sample town sends no e-mail, so the acknowledgement waits in the outbox; the test makes it
uncertain as a crash mid-send and a provider that cannot tell would have left it.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlmodel import col

from store.models import Message, OutboxRow, TicketEvent, User, table_of
from store.users import create_token
from tests.conftest import rows
from tests.inbox.web.conftest import Town, Visitor
from tests.inbox.web.test_actions import events

OUTBOX = table_of(OutboxRow)
MESSAGES = table_of(Message)
OPENING_HOURS = "Wanneer is het gemeentehuis open op zaterdag?"
IN_DOUBT = "sending was interrupted; it may or may not have arrived"


async def uncertain_acknowledgement(town: Town, email: str = "mie@example.be") -> tuple[str, int]:
    """A front-desk ticket whose acknowledgement is in doubt; its reference and outbox id."""
    reference = await town.submit(OPENING_HOURS, "Openingsuren", email)
    [row] = [r for r in await rows(town.db, OutboxRow) if r["recipient"] == email]
    async with town.db.engine.begin() as conn:
        await conn.execute(
            sa.update(OUTBOX)
            .where(OUTBOX.c.id == row["id"])
            .values(state="uncertain", reason=IN_DOUBT, attempt_started_at=town.clock.now)
        )
        await conn.execute(
            sa.update(MESSAGES)
            .where(MESSAGES.c.id == row["message_id"])
            .values(delivery_status="uncertain")
        )
    return reference, int(row["id"])


async def settle(
    visitor: Visitor, reference: str, outbox_id: int, decision: str
) -> tuple[int, str | None]:
    """Press the button on the ticket page; the status and where the redirect leads."""
    assert (await visitor.get(f"/tickets/{reference}")).status == 200
    response = await visitor.post(
        f"/tickets/{reference}/outbox/{outbox_id}/{decision}", {"csrf": visitor.csrf()}
    )
    location = response.headers.get("Location")
    if response.status == 303 and location:
        await visitor.get(location.split("#")[0])
    return response.status, location


async def outbox_row(town: Town, outbox_id: int) -> sa.RowMapping:
    [row] = await rows(town.db, OutboxRow, OUTBOX.c.id == outbox_id)
    return row


async def settled_events(town: Town, reference: str) -> list[tuple[str, Any, int | None]]:
    return [
        (e.type, e.data.get("outbox_id"), e.actor_user_id)
        for e in await events(town, reference)
        if e.type.startswith("delivery_")
    ]


async def test_staff_send_an_uncertain_answer_again_from_the_ticket_page(town: Town) -> None:
    reference, outbox_id = await uncertain_acknowledgement(town)
    an = await town.signed_in("an@wingene.example")
    await an.get(f"/tickets/{reference}")
    assert "onzeker of het aankwam" in an.html
    assert IN_DOUBT in an.html
    assert f'action="/tickets/{reference}/outbox/{outbox_id}/resend"' in an.html

    status, location = await settle(an, reference, outbox_id, "resend")
    row = await outbox_row(town, outbox_id)
    assert (status, location) == (303, f"/tickets/{reference}#bericht-{row['message_id']}")
    assert an.notice() == "Het bericht wordt opnieuw verstuurd."
    assert (row["state"], row["next_attempt_at"]) == ("pending", town.clock.now)
    assert row["reason"] == "sent again at a staff member's request"
    [message] = await rows(town.db, Message, MESSAGES.c.id == row["message_id"])
    assert message["delivery_status"] == "pending"
    [an_user] = await rows(town.db, User, sa.column("email") == "an@wingene.example")
    assert await settled_events(town, reference) == [("delivery_resent", outbox_id, an_user["id"])]
    assert "Onzeker bericht opnieuw verstuurd" in an.html
    assert f"/outbox/{outbox_id}/resend" not in an.html  # settled: the buttons are gone

    # Pressed again (an old page in another tab): refused, nothing changes.
    response = await an.post(
        f"/tickets/{reference}/outbox/{outbox_id}/confirm", {"csrf": an.csrf()}
    )
    assert response.status == 409
    assert "niet meer onzeker" in (an.error() or "")
    assert (await outbox_row(town, outbox_id))["state"] == "pending"
    assert len(await settled_events(town, reference)) == 1


async def test_staff_mark_an_uncertain_answer_as_arrived(town: Town) -> None:
    reference, outbox_id = await uncertain_acknowledgement(town)
    an = await town.signed_in("an@wingene.example")
    status, _ = await settle(an, reference, outbox_id, "confirm")
    assert status == 303
    assert an.notice() == "Het bericht staat nu als verstuurd."
    row = await outbox_row(town, outbox_id)
    assert (row["state"], row["sent_at"]) == ("sent", town.clock.now)
    [message] = await rows(town.db, Message, MESSAGES.c.id == row["message_id"])
    assert message["delivery_status"] == "sent"
    assert [t for t, _, _ in await settled_events(town, reference)] == ["delivery_confirmed"]


async def test_other_departments_tickets_other_rows_and_forms_without_token_are_refused(
    town: Town,
) -> None:
    reference, outbox_id = await uncertain_acknowledgement(town)
    other, other_id = await uncertain_acknowledgement(town, "jan@example.be")
    await town.add_user("td@wingene.example", "agent", ("technical-service",))
    tom = await town.signed_in("td@wingene.example")
    # A ticket of another department is "not found", as its page is.
    await tom.get("/")
    response = await tom.post(
        f"/tickets/{reference}/outbox/{outbox_id}/resend", {"csrf": tom.csrf()}
    )
    assert response.status == 404
    an = await town.signed_in("an@wingene.example")
    await an.get(f"/tickets/{reference}")
    token = an.csrf()
    # The outbox row of another ticket, under this ticket's address: not found either.
    response = await an.post(f"/tickets/{reference}/outbox/{other_id}/resend", {"csrf": token})
    assert response.status == 404
    response = await an.post(f"/tickets/{reference}/outbox/{outbox_id}/resend", {})
    assert response.status == 403
    for ident in (outbox_id, other_id):
        assert (await outbox_row(town, ident))["state"] == "uncertain"
    assert await settled_events(town, other) == []


async def api(town: Town, token: str, path: str) -> tuple[int, Any]:
    response = await town.client.post(
        f"/api/v1{path}", headers={"Authorization": f"Bearer {token}"}
    )
    return response.status, await response.json()


async def test_the_api_settles_uncertain_rows_for_staff_who_may_see_the_ticket(
    town: Town,
) -> None:
    reference, outbox_id = await uncertain_acknowledgement(town)
    second_ref, second_id = await uncertain_acknowledgement(town, "jan@example.be")
    await town.add_user("td@wingene.example", "agent", ("technical-service",))
    async with town.db.session() as session:
        an = await create_token(session, "an@wingene.example")
        tom = await create_token(session, "td@wingene.example")

    status, body = await api(town, tom, f"/outbox/{outbox_id}/confirm")
    assert (status, body["error"]["code"]) == (404, "not_found")
    assert (await outbox_row(town, outbox_id))["state"] == "uncertain"

    status, body = await api(town, an, f"/outbox/{outbox_id}/confirm")
    assert status == 200, body
    assert (body["id"], body["state"], body["ticket_reference"]) == (outbox_id, "sent", reference)
    status, body = await api(town, an, f"/outbox/{outbox_id}/resend")
    assert (status, body["error"]["code"]) == (409, "not_uncertain")
    assert (await outbox_row(town, outbox_id))["state"] == "sent"

    status, body = await api(town, an, f"/outbox/{second_id}/resend")
    assert (status, body["state"]) == (200, "pending")
    status, body = await api(town, an, "/outbox/999999/resend")
    assert status == 404

    async with town.db.session() as session:
        kinds = (
            await session.scalars(
                sa.select(col(TicketEvent.type))
                .where(col(TicketEvent.type).like("delivery_%"))
                .order_by(col(TicketEvent.id))
            )
        ).all()
    assert kinds == ["delivery_confirmed", "delivery_resent"]
    assert await settled_events(town, second_ref) != []
