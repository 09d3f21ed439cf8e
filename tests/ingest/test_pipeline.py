"""The intake pipeline on SQLite and real PostgreSQL: tickets, threading, duplicates, failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from ingest.model import (
    Channel,
    ContactRef,
    Identity,
    IdentityKind,
    IntakeUnavailable,
    Kind,
    RawPayload,
    ThreadHints,
)
from ingest.pipeline import Intake, IntakePolicy
from router.rules import RuleSet
from store.db import Database
from store.models import (
    ContactEvent,
    ContactIdentity,
    JournalEntry,
    Message,
    OutboxRow,
    Ticket,
    TicketEvent,
    table_of,
)
from tests.conftest import Clock, rows
from tests.messages import inbound, sample_rules


@pytest.fixture
async def intake(database: Database, clock: Clock) -> AsyncIterator[Intake]:
    rules = sample_rules()
    service = Intake(database.engine, lambda: rules, IntakePolicy(reference_prefix="1750"), clock)
    await service.start()
    yield service
    await service.stop()


async def test_new_message_becomes_routed_ticket_with_history_and_acknowledgement(
    intake: Intake, database: Database
) -> None:
    result = await intake.submit(inbound(email="An.Peeters@Example.BE"))

    assert result.new_ticket and not result.duplicate
    assert result.ticket_reference == "1750-000001"
    [ticket] = await rows(database, Ticket)
    assert ticket["department"] == "technical-service"
    assert ticket["tags"] == ["verlichting"]
    assert ticket["status"] == "new"
    # A form cannot carry the answer: it goes to the address the citizen gave.
    assert (ticket["reply_channel"], ticket["reply_address"]) == ("email", "an.peeters@example.be")
    [identity] = await rows(database, ContactIdentity)
    assert (identity["kind"], identity["value"]) == ("email", "an.peeters@example.be")
    events = await rows(database, TicketEvent)
    assert [e["type"] for e in events] == ["created", "routed"]
    assert events[1]["data"]["rules"] == ["street-lights"]
    [journal] = await rows(database, JournalEntry)
    assert journal["state"] == "processed" and journal["payload"] == b'{"sample": true}'
    [ack] = await rows(database, OutboxRow)
    assert ack["purpose"] == "acknowledgement" and ack["state"] == "pending"
    assert "1750-000001" in ack["body"]


async def test_reply_channel_from_the_connector_wins(intake: Intake, database: Database) -> None:
    await intake.submit(inbound(reply_channel=Channel.EMAIL, reply_address="an@example.be"))
    [ack] = await rows(database, OutboxRow)
    assert (ack["channel"], ack["recipient"]) == ("email", "an@example.be")


async def test_reply_by_message_id_joins_the_ticket(intake: Intake, database: Database) -> None:
    first = await intake.submit(inbound(channel=Channel.EMAIL, external_id="<a1@mail.example>"))
    second = await intake.submit(
        inbound(
            "Nog steeds stuk.",
            channel=Channel.EMAIL,
            external_id="<a2@mail.example>",
            email="someone.else@example.be",
            hints=ThreadHints(message_ids=("<a1@mail.example>",)),
        )
    )
    assert second.ticket_reference == first.ticket_reference and not second.new_ticket
    assert len(await rows(database, Ticket)) == 1
    assert len(await rows(database, Message, table_of(Message).c.direction == "in")) == 2
    events = await rows(database, TicketEvent)
    assert events[-1]["type"] == "message_received"


async def test_quoted_reference_joins_only_for_the_same_citizen(
    intake: Intake, database: Database
) -> None:
    first = await intake.submit(inbound(email="an@example.be"))
    same = await intake.submit(
        inbound(
            "Extra foto", email="an@example.be", hints=ThreadHints(reference=first.ticket_reference)
        )
    )
    other = await intake.submit(
        inbound(
            "Doorgestuurd",
            email="jan@example.be",
            hints=ThreadHints(reference=first.ticket_reference),
        )
    )
    assert same.ticket_reference == first.ticket_reference
    assert other.new_ticket and other.ticket_reference != first.ticket_reference


async def test_a_reference_typed_in_other_letter_case_still_joins(database: Database) -> None:
    rules = sample_rules()
    service = Intake(database.engine, lambda: rules, IntakePolicy(reference_prefix="MP"))
    await service.start()
    try:
        first = await service.submit(inbound(email="an@example.be"))
        assert first.ticket_reference == "MP-000001"
        again = await service.submit(
            inbound("Nog een foto", email="an@example.be", hints=ThreadHints(reference="mp-000001"))
        )
    finally:
        await service.stop()
    assert again.ticket_reference == "MP-000001" and not again.new_ticket


async def test_conversation_continues_within_the_window_only(
    intake: Intake, database: Database, clock: Clock
) -> None:
    chat = ThreadHints(conversation="telegram:42")
    first = await intake.submit(
        inbound(channel=Channel.TELEGRAM, email=None, chat="42", hints=chat)
    )
    clock.now += timedelta(hours=2)
    later = await intake.submit(
        inbound("en nog dit", channel=Channel.TELEGRAM, email=None, chat="42", hints=chat)
    )
    assert later.ticket_reference == first.ticket_reference
    clock.now += timedelta(hours=30)
    next_day = await intake.submit(
        inbound("iets anders", channel=Channel.TELEGRAM, email=None, chat="42", hints=chat)
    )
    assert next_day.new_ticket and next_day.ticket_reference != first.ticket_reference


async def test_a_citizen_answer_reopens_a_pending_ticket(
    intake: Intake, database: Database
) -> None:
    first = await intake.submit(inbound(channel=Channel.EMAIL, external_id="<p1@x>"))
    async with database.engine.begin() as conn:
        await conn.execute(sa.update(table_of(Ticket)).values(status="pending"))
    await intake.submit(
        inbound(
            "Hier is de info",
            channel=Channel.EMAIL,
            external_id="<p2@x>",
            hints=ThreadHints(message_ids=("<p1@x>",)),
        )
    )
    [ticket] = await rows(database, Ticket)
    assert ticket["reference"] == first.ticket_reference and ticket["status"] == "open"


async def test_redelivered_message_is_dropped_and_answers_with_the_same_reference(
    intake: Intake, database: Database
) -> None:
    msg = inbound(external_id="SM123")
    first = await intake.submit(msg)
    again = await intake.submit(msg)
    assert again.duplicate and again.ticket_reference == first.ticket_reference
    assert len(await rows(database, Message)) == 2  # the inbound message and its acknowledgement
    assert [j["state"] for j in await rows(database, JournalEntry)] == ["processed", "duplicate"]


async def test_concurrent_copies_in_one_batch_make_one_ticket(
    intake: Intake, database: Database
) -> None:
    msg = inbound(external_id="SM-race")
    results = await asyncio.gather(*(intake.submit(msg) for _ in range(5)))
    assert len({r.ticket_reference for r in results}) == 1
    assert sum(not r.duplicate for r in results) == 1
    assert len(await rows(database, Ticket)) == 1


async def test_concurrent_copies_through_two_writers_make_one_ticket(
    database: Database, clock: Clock
) -> None:
    """Two processes' writers (two Intake instances, two connection pools) race on one message."""
    rules = sample_rules()
    other_db = Database(database.url)
    writers = [
        Intake(db.engine, lambda: rules, IntakePolicy(reference_prefix="1750"), clock)
        for db in (database, other_db)
    ]
    for w in writers:
        await w.start()
    try:
        for n in range(5):
            msg = inbound(external_id=f"SM-two-{n}")
            results = await asyncio.gather(*(w.submit(msg) for w in writers))
            assert sum(not r.duplicate for r in results) == 1
            assert results[0].ticket_reference == results[1].ticket_reference
    finally:
        for w in writers:
            await w.stop()
        await other_db.close()
    assert len(await rows(database, Ticket)) == 5


async def test_a_busy_batch_gets_distinct_sequential_references(
    intake: Intake, database: Database
) -> None:
    results = await asyncio.gather(*(intake.submit(inbound(f"bericht {n}")) for n in range(60)))
    refs = sorted(r.ticket_reference or "" for r in results)
    assert refs == [f"1750-{n:06d}" for n in range(1, 61)]


async def test_one_phone_number_is_one_contact_across_channels(
    intake: Intake, database: Database
) -> None:
    await intake.submit(inbound(channel=Channel.SMS, email=None, phone="0470 12 34 56"))
    await intake.submit(
        inbound(channel=Channel.WHATSAPP, email=None, phone="whatsapp:+32470123456")
    )
    tickets = await rows(database, Ticket)
    assert len(tickets) == 2 and tickets[0]["contact_id"] == tickets[1]["contact_id"]
    [identity] = await rows(database, ContactIdentity)
    assert identity["value"] == "+32470123456"


async def test_a_message_that_cannot_be_processed_is_quarantined_not_lost(
    database: Database, clock: Clock
) -> None:
    good_rules = sample_rules()

    class Exploding:
        def route(self, msg: object) -> object:
            if "BOOM" in getattr(msg, "text", ""):
                raise RuntimeError("rule engine exploded")
            return good_rules.route(msg)  # type: ignore[arg-type]

    rules: Callable[[], RuleSet] = lambda: Exploding()  # type: ignore[assignment,return-value]  # noqa: E731
    service = Intake(database.engine, rules, IntakePolicy(reference_prefix="1750"), clock)
    await service.start()
    try:
        bad, good = await asyncio.gather(
            service.submit(inbound("BOOM")), service.submit(inbound("lamp kapot"))
        )
    finally:
        await service.stop()
    assert bad.quarantined and bad.ticket_reference is None
    assert good.new_ticket and good.ticket_reference
    states = {j["state"]: j for j in await rows(database, JournalEntry)}
    assert "rule engine exploded" in (states["quarantined"]["error"] or "")
    assert states["quarantined"]["payload"] == b'{"sample": true}'


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
async def test_nothing_is_acknowledged_when_the_database_refuses(
    tmp_path: object, clock: Clock, backend: str, request: pytest.FixtureRequest
) -> None:
    # A database without schema: every write fails.
    if backend == "postgresql":
        db = Database(request.getfixturevalue("postgres_url")())
    else:
        db = Database(f"sqlite:///{tmp_path}/empty.db")
    rules = sample_rules()
    service = Intake(db.engine, lambda: rules, IntakePolicy(reference_prefix="1750"), clock)
    await service.start()
    try:
        with pytest.raises(IntakeUnavailable):
            await service.submit(inbound())
    finally:
        await service.stop()
        await db.close()


async def test_a_connection_lost_mid_write_is_a_retry_not_a_quarantine(
    intake: Intake, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The database drops the connection while the batch commits (a PostgreSQL restart), and is
    # back a moment later, in time for the quarantine's own write. The message is not broken:
    # its sender must be told to try again, not get a 2xx for a message set aside.
    async def dropped(msgs: object) -> object:
        raise OperationalError("COMMIT", {}, ConnectionResetError("connection reset by peer"))

    monkeypatch.setattr(intake, "_commit", dropped)
    with pytest.raises(IntakeUnavailable):
        await intake.submit(inbound())
    assert await rows(database, JournalEntry) == []


async def test_submit_refuses_when_intake_is_stopped(database: Database) -> None:
    rules = sample_rules()
    service = Intake(database.engine, lambda: rules, IntakePolicy(reference_prefix="1750"))
    with pytest.raises(IntakeUnavailable):
        await service.submit(inbound(kind=Kind.QUESTION))


async def test_a_contact_event_lands_on_the_contact_a_message_made(
    intake: Intake, database: Database
) -> None:
    await intake.submit(inbound(channel=Channel.SMS, email=None, phone="+32470123456"))
    caller = ContactRef((Identity(IdentityKind.PHONE, "0470/12.34.56"),))
    raw = RawPayload("application/x-www-form-urlencoded", b"CallSid=CA1")
    assert await intake.record_contact_event(
        Channel.VOICE, "answered:CA1", caller, "call_answered", {"caller": "+32470123456"}, raw
    )
    [identity] = await rows(database, ContactIdentity)
    [event] = await rows(database, ContactEvent)
    assert event["contact_id"] == identity["contact_id"]
    assert (event["type"], event["data"], event["ticket_id"]) == (
        "call_answered",
        {"caller": "+32470123456"},
        None,
    )
