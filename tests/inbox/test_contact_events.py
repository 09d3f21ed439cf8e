"""Contact events in the API: a call the front desk answered, listed and turned into a ticket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from inbox import ApiContext
from ingest.files import AttachmentStore
from ingest.model import Channel, ContactRef, Identity, IdentityKind, RawPayload
from ingest.pipeline import Intake, IntakePolicy
from store.db import Database
from store.models import (
    Contact,
    ContactEvent,
    JournalEntry,
    Message,
    OutboxRow,
    Ticket,
    TicketEvent,
    table_of,
)
from tests.conftest import rows
from tests.inbox.conftest import DEPARTMENTS, Api, MakeApi
from tests.messages import sample_rules

CALLER = "+32470123456"
EVENTS = table_of(TicketEvent)
CONTACT_EVENTS = table_of(ContactEvent)
CALL = {"caller": CALLER, "duration_seconds": 184, "call_sid": "CA1", "answered_by": None}


@pytest.fixture
async def intake(database: Database) -> AsyncIterator[Intake]:
    rules = sample_rules()
    service = Intake(database.engine, lambda: rules, IntakePolicy(reference_prefix="1750"))
    await service.start()
    yield service
    await service.stop()


@pytest.fixture
async def desk(
    database: Database, files: AttachmentStore, intake: Intake, make_api: MakeApi
) -> Api:
    """The API as the service mounts it: tickets are made through the running intake."""
    return await make_api(ApiContext(database, DEPARTMENTS, files, submit=intake.submit))


async def answered(intake: Intake, call_sid: str = "CA1", number: str = CALLER) -> bool:
    """Record an answered call as the phone line does."""
    return await intake.record_contact_event(
        Channel.VOICE,
        f"answered:{call_sid}",
        ContactRef((Identity(IdentityKind.PHONE, number),)),
        "call_answered",
        {**CALL, "call_sid": call_sid},
        RawPayload("application/x-www-form-urlencoded", b"CallSid=" + call_sid.encode()),
    )


async def only_event(database: Database) -> Any:
    [event] = await rows(database, ContactEvent)
    return event


async def only_event_of(database: Database, external_id: str) -> Any:
    [event] = await rows(database, ContactEvent, CONTACT_EVENTS.c.external_id == external_id)
    return event


async def test_a_redelivered_event_is_journalled_but_recorded_once(
    intake: Intake, database: Database
) -> None:
    # Written the way citizens dial it: the contact is found by the normalised number.
    assert await answered(intake, number="0470 12 34 56")
    assert not await answered(intake)
    event = await only_event(database)
    [contact] = await rows(database, Contact)
    assert event["contact_id"] == contact["id"]
    assert [j["state"] for j in await rows(database, JournalEntry)] == ["processed", "duplicate"]
    assert await rows(database, Ticket) == []


async def test_admins_and_operators_list_a_contacts_events(
    desk: Api, intake: Intake, database: Database
) -> None:
    await answered(intake, "CA1")
    await answered(intake, "CA2")
    event = await only_event_of(database, "answered:CA2")
    for who in ("admin", "operator"):
        status, body = await desk.get(f"/contacts/{event['contact_id']}/events", who)
        assert status == 200
        assert [e["data"]["call_sid"] for e in body["items"]] == ["CA2", "CA1"]
        first = body["items"][0]
        assert first == {
            **first,
            "channel": "voice",
            "type": "call_answered",
            "ticket_reference": None,
        }


async def test_the_front_desk_turns_a_call_into_a_ticket(
    desk: Api, intake: Intake, database: Database
) -> None:
    await answered(intake)
    event = await only_event(database)
    status, body = await desk.post(
        f"/contact-events/{event['id']}/ticket",
        {"kind": "question", "text": "Wanneer wordt het grofvuil opgehaald?"},
        "operator",
    )
    assert status == 201, body
    assert body["ticket_reference"] == "1750-000001"
    assert body["id"] == event["id"]
    [ticket] = await rows(database, Ticket)
    assert (ticket["reference"], ticket["kind"], ticket["origin_channel"]) == (
        "1750-000001",
        "question",
        "voice",
    )
    assert ticket["contact_id"] == event["contact_id"]
    # Answers go by SMS to the number that called, as for any voice ticket.
    assert (ticket["reply_channel"], ticket["reply_address"]) == ("sms", CALLER)
    assert (await only_event(database))["ticket_id"] == ticket["id"]
    [message] = await rows(database, Message)
    assert message["text"] == "Wanneer wordt het grofvuil opgehaald?"
    assert message["external_id"] == f"event:{event['id']}"
    types = [e["type"] for e in await rows(database, TicketEvent)]
    assert types == ["created", "routed", "acknowledgement_skipped"]
    # The citizen was on the phone: no acknowledgement goes out.
    assert await rows(database, OutboxRow) == []

    status, body = await desk.get(f"/contacts/{event['contact_id']}/events")
    assert body["items"][0]["ticket_reference"] == "1750-000001"


async def test_a_department_given_overrides_the_router_visibly(
    desk: Api, intake: Intake, database: Database
) -> None:
    await answered(intake)
    event = await only_event(database)
    status, body = await desk.post(
        f"/contact-events/{event['id']}/ticket",
        {"kind": "report", "department": "environment", "subject": "Sluikstort"},
    )
    assert status == 201, body
    [ticket] = await rows(database, Ticket)
    assert (ticket["department"], ticket["subject"]) == ("environment", "Sluikstort")
    [routed] = await rows(database, TicketEvent, EVENTS.c.type == "routed")
    [moved] = await rows(database, TicketEvent, EVENTS.c.type == "transferred")
    assert moved["data"] == {
        "from": routed["data"]["department"],
        "to": "environment",
        "reason": "chosen at the front desk",
    }
    assert moved["actor_user_id"] is not None


async def test_a_call_becomes_a_ticket_once(desk: Api, intake: Intake, database: Database) -> None:
    await answered(intake)
    event = await only_event(database)
    path = f"/contact-events/{event['id']}/ticket"
    assert (await desk.post(path, {"kind": "question"}))[0] == 201
    status, body = await desk.post(path, {"kind": "question"})
    assert (status, body["error"]["code"]) == (409, "already_ticket")
    assert len(await rows(database, Ticket)) == 1


async def test_agents_may_not_and_unknown_ids_are_not_found(
    desk: Api, intake: Intake, database: Database
) -> None:
    await answered(intake)
    event = await only_event(database)
    status, _ = await desk.get(f"/contacts/{event['contact_id']}/events", "agent")
    assert status == 403
    status, _ = await desk.post(
        f"/contact-events/{event['id']}/ticket", {"kind": "question"}, "agent"
    )
    assert status == 403
    assert (await desk.get("/contacts/999/events"))[0] == 404
    assert (await desk.post("/contact-events/999/ticket", {"kind": "question"}))[0] == 404
    status, body = await desk.post(
        f"/contact-events/{event['id']}/ticket", {"kind": "question", "department": "nope"}
    )
    assert (status, body["error"]["code"]) == (422, "unknown_department")
    assert (await desk.post(f"/contact-events/{event['id']}/ticket", {"kind": "wish"}))[0] == 422
    assert await rows(database, Ticket) == []


async def test_without_intake_no_ticket_is_made(
    database: Database, files: AttachmentStore, intake: Intake, make_api: MakeApi
) -> None:
    api = await make_api(ApiContext(database, DEPARTMENTS, files))
    await answered(intake)
    event = await only_event(database)
    status, _ = await api.post(f"/contact-events/{event['id']}/ticket", {"kind": "question"})
    assert status == 503
    assert (await only_event(database))["ticket_id"] is None
