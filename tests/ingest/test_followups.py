"""What ingest does besides opening tickets: no acknowledgement for robots or floods, delivery
reports on outbound messages, input set aside with its reason. On SQLite and real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from ingest.dispatch import Dispatcher, DispatchPolicy
from ingest.model import (
    Channel,
    DeliveryReport,
    DeliveryStatus,
    OutboundMessage,
    RawPayload,
    SendResult,
    ThreadHints,
)
from ingest.pipeline import Intake, IntakePolicy
from store.cursors import DatabaseCursors
from store.db import Database
from store.models import JournalEntry, Message, OutboxRow, TicketEvent, table_of
from store.outbox import OutboundDraft, queue_outbound
from tests.conftest import Clock, rows
from tests.messages import inbound, sample_rules


@pytest.fixture
async def intake(database: Database, clock: Clock) -> AsyncIterator[Intake]:
    rules = sample_rules()
    policy = IntakePolicy(reference_prefix="1750", acknowledgements_per_hour=2)
    service = Intake(database.engine, lambda: rules, policy, clock)
    await service.start()
    yield service
    await service.stop()


async def test_an_automatic_message_becomes_a_ticket_without_acknowledgement(
    intake: Intake, database: Database
) -> None:
    result = await intake.submit(inbound(channel=Channel.EMAIL, automatic=True))
    assert result.new_ticket
    assert await rows(database, OutboxRow) == []
    [skipped] = await rows(database, TicketEvent, table_of(TicketEvent).c.type.like("ack%"))
    assert skipped["type"] == "acknowledgement_skipped"
    assert "automatically" in skipped["data"]["reason"]


async def test_acknowledgements_to_one_address_are_limited_per_hour(
    intake: Intake, database: Database, clock: Clock
) -> None:
    for n in range(4):
        await intake.submit(inbound(f"Afval niet opgehaald, straat {n}", email="veel@example.be"))
    await intake.submit(inbound("De straatlamp is stuk", email="iemand.anders@example.be"))
    acks = await rows(database, OutboxRow)
    assert [a["recipient"] for a in acks] == [
        "veel@example.be",
        "veel@example.be",
        "iemand.anders@example.be",
    ]
    skipped = await rows(
        database, TicketEvent, table_of(TicketEvent).c.type == "acknowledgement_skipped"
    )
    assert len(skipped) == 2
    assert (
        "2 acknowledgements went to this address in the last hour" in skipped[0]["data"]["reason"]
    )

    # An hour later the citizen is acknowledged again.
    clock.now += timedelta(hours=1, minutes=1)
    await intake.submit(inbound("Nog eens afval", email="veel@example.be"))
    assert len(await rows(database, OutboxRow)) == 4


async def test_the_limit_counts_messages_in_one_batch_too(database: Database) -> None:
    rules = sample_rules()
    policy = IntakePolicy(reference_prefix="1750", acknowledgements_per_hour=1)
    service = Intake(database.engine, lambda: rules, policy)
    await service.start()
    try:
        # Submitted together, so the writer commits them in one batch.
        await asyncio.gather(
            *(service.submit(inbound(f"lamp {n}", email="x@example.be")) for n in range(5))
        )
    finally:
        await service.stop()
    assert len(await rows(database, OutboxRow)) == 1


async def sent_acknowledgement(database: Database, clock: Clock) -> tuple[int, str]:
    """Dispatch the one waiting acknowledgement with a fake e-mail sender; its provider id."""

    class Sender:
        async def send(self, message: OutboundMessage) -> SendResult:
            return SendResult(provider_id=f"mp.{message.outbox_id}@wingene.example")

    dispatcher = Dispatcher(database.engine, {Channel.EMAIL: Sender()}, DispatchPolicy(), clock)
    assert await dispatcher.run_once() == 1
    [row] = await rows(database, OutboxRow)
    return int(row["message_id"]), str(row["provider_id"])


async def test_a_bounce_fails_the_outbound_message_and_tells_staff(
    intake: Intake, database: Database, clock: Clock
) -> None:
    await intake.submit(inbound(channel=Channel.EMAIL))
    message_id, provider_id = await sent_acknowledgement(database, clock)

    bounce = DeliveryReport(
        channel=Channel.EMAIL,
        provider_id=provider_id,
        status=DeliveryStatus.FAILED,
        received_at=clock.now,
        detail="550 5.1.1 mailbox unknown",
        raw=RawPayload("message/rfc822", b"From: MAILER-DAEMON\r\n\r\nbounce"),
    )
    assert await intake.report_delivery(bounce) is True
    [message] = await rows(database, Message, table_of(Message).c.id == message_id)
    assert message["delivery_status"] == "failed"
    [outbox] = await rows(database, OutboxRow)
    assert outbox["state"] == "failed"
    assert outbox["reason"] == "not delivered: 550 5.1.1 mailbox unknown"
    [event] = await rows(database, TicketEvent, table_of(TicketEvent).c.type == "delivery_failed")
    assert event["data"]["detail"] == "550 5.1.1 mailbox unknown"
    journal = await rows(database, JournalEntry, table_of(JournalEntry).c.state == "delivery")
    assert journal[0]["payload"].endswith(b"bounce") and journal[0]["message_id"] == message_id


async def test_delivery_status_only_moves_forward_and_unknown_ids_are_journalled(
    intake: Intake, database: Database, clock: Clock
) -> None:
    await intake.submit(inbound(channel=Channel.EMAIL))
    message_id, provider_id = await sent_acknowledgement(database, clock)

    def report(status: DeliveryStatus, provider: str = provider_id) -> DeliveryReport:
        return DeliveryReport(Channel.EMAIL, provider, status, clock.now)

    assert await intake.report_delivery(report(DeliveryStatus.READ))
    assert await intake.report_delivery(report(DeliveryStatus.DELIVERED))
    [message] = await rows(database, Message, table_of(Message).c.id == message_id)
    assert message["delivery_status"] == "read"

    assert await intake.report_delivery(report(DeliveryStatus.FAILED, "nobody@x")) is False
    unknown = await rows(database, JournalEntry, table_of(JournalEntry).c.error.is_not(None))
    assert unknown[0]["error"] == "no outbound message has this id"


async def test_quarantined_and_ignored_input_is_journalled_with_its_reason(
    intake: Intake, database: Database
) -> None:
    raw = RawPayload("message/rfc822", b"\x00\x01 not a mail")
    await intake.quarantine(Channel.EMAIL, "sha256-abc@meldpunt.invalid", raw, "no headers")
    await intake.ignore(Channel.EMAIL, "mp.1@wingene.example", raw, "meldpunt's own mail")
    quarantined, ignored = await rows(database, JournalEntry)
    assert (quarantined["state"], quarantined["error"]) == ("quarantined", "no headers")
    assert quarantined["payload"] == raw.body
    assert (ignored["state"], ignored["error"]) == ("ignored", "meldpunt's own mail")


async def test_the_dispatcher_hands_e_mail_its_thread(
    intake: Intake, database: Database, clock: Clock
) -> None:
    first = await intake.submit(inbound(channel=Channel.EMAIL, external_id="a@citizen"))
    _, provider_id = await sent_acknowledgement(database, clock)
    await intake.submit(
        inbound(
            channel=Channel.EMAIL,
            external_id="b@citizen",
            hints=ThreadHints(message_ids=(provider_id,)),
        )
    )
    seen: list[OutboundMessage] = []

    class Sender:
        async def send(self, message: OutboundMessage) -> SendResult:
            seen.append(message)
            return SendResult(provider_id=f"reply.{message.outbox_id}@wingene.example")

    # A staff reply on the same ticket.
    [ticket_id] = {r["ticket_id"] for r in await rows(database, Message)}
    async with database.engine.begin() as conn:
        await queue_outbound(
            conn,
            [OutboundDraft(ticket_id, "email", "burger@example.be", "Hersteld.", "reply")],
            clock.now,
        )
    dispatcher = Dispatcher(database.engine, {Channel.EMAIL: Sender()}, DispatchPolicy(), clock)
    await dispatcher.run_once()
    [reply] = seen
    assert first.ticket_reference == reply.ticket_reference
    assert reply.in_reply_to == ("b@citizen",)
    assert reply.references == ("a@citizen", provider_id, "b@citizen")
    assert reply.department == "technical-service" and reply.automatic is False


async def test_cursors_are_saved_and_replaced(database: Database) -> None:
    cursors = DatabaseCursors(database.engine)
    assert await cursors.load("imap:default") is None
    await cursors.save("imap:default", {"uidvalidity": 7, "last_uid": 10})
    await cursors.save("imap:default", {"uidvalidity": 7, "last_uid": 12})
    assert await cursors.load("imap:default") == {"uidvalidity": 7, "last_uid": 12}
