"""The web chat's read side on SQLite and PostgreSQL: transcripts, the queue, a visitor's files.

Rows are made the way the service makes them: messages through the intake pipeline, answers
queued as the API queues them, notes and status changes as plain rows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from ingest.model import (
    Attachment,
    Channel,
    ContactRef,
    Identity,
    IdentityKind,
    InboundMessage,
    RawPayload,
    ThreadHints,
)
from ingest.pipeline import Intake, IntakePolicy
from store.chat import DatabaseChats, Reachability, conversation_key
from store.db import Database
from store.models import Message, OutboxRow, Ticket, table_of
from store.outbox import OutboundDraft, queue_outbound
from tests.conftest import Clock, rows
from tests.messages import inbound, sample_rules

TICKETS = table_of(Ticket)
MESSAGES = table_of(Message)
OUTBOX = table_of(OutboxRow)
PHOTO = "a" * 64


@pytest.fixture
async def intake(database: Database, clock: Clock) -> AsyncIterator[Intake]:
    rules = sample_rules()
    service = Intake(database.engine, lambda: rules, IntakePolicy(reference_prefix="1750"), clock)
    await service.start()
    yield service
    await service.stop()


@pytest.fixture
def chats(database: Database) -> DatabaseChats:
    return DatabaseChats(database.engine)


def chat_message(
    visitor: str,
    client_id: str,
    text: str,
    at: datetime,
    *,
    addresses: tuple[Identity, ...] = (),
    attachments: tuple[Attachment, ...] = (),
) -> InboundMessage:
    return InboundMessage(
        channel=Channel.WEBCHAT,
        external_id=f"{visitor}:{client_id}",
        sender=ContactRef((Identity(IdentityKind.WEBCHAT, visitor), *addresses)),
        received_at=at,
        text=text,
        raw=RawPayload("application/json", b"{}"),
        attachments=attachments,
        hints=ThreadHints(conversation=conversation_key(visitor)),
    )


class Chat:
    """Visitors writing one after another, a minute apart, and staff answering them."""

    def __init__(self, intake: Intake, database: Database, clock: Clock) -> None:
        self.intake, self.database, self.clock = intake, database, clock

    async def write(self, visitor: str, text: str = "Hallo", **extra: object) -> str:
        self.clock.now += timedelta(minutes=1)
        client_id = f"c{self.clock.now.timestamp():.0f}"
        message = chat_message(visitor, client_id, text, self.clock.now, **extra)  # type: ignore[arg-type]
        result = await self.intake.submit(message)
        assert result.ticket_reference is not None
        return result.ticket_reference

    async def ticket_id(self, reference: str) -> int:
        [ticket] = await rows(self.database, Ticket, TICKETS.c.reference == reference)
        return int(ticket["id"])

    async def answer(self, reference: str, text: str) -> int:
        """Queue an answer as the API does; its outbox id."""
        self.clock.now += timedelta(minutes=1)
        ticket_id = await self.ticket_id(reference)
        async with self.database.engine.begin() as conn:
            [(_, outbox_id)] = await queue_outbound(
                conn,
                [OutboundDraft(ticket_id, "webchat", "visitor", text, "reply")],
                self.clock.now,
            )
        return outbox_id

    async def note(self, reference: str, text: str) -> None:
        ticket_id = await self.ticket_id(reference)
        async with self.database.engine.begin() as conn:
            await conn.execute(
                sa.insert(MESSAGES).values(
                    ticket_id=ticket_id,
                    direction="note",
                    channel="desk",
                    text=text,
                    delivery_status="received",
                    created_at=self.clock.now,
                )
            )

    async def set_status(self, reference: str, status: str) -> None:
        async with self.database.engine.begin() as conn:
            await conn.execute(
                sa.update(TICKETS).where(TICKETS.c.reference == reference).values(status=status)
            )


@pytest.fixture
def chat(intake: Intake, database: Database, clock: Clock) -> Chat:
    return Chat(intake, database, clock)


async def test_the_queue_counts_open_unanswered_chats_oldest_first(
    chat: Chat, chats: DatabaseChats, intake: Intake
) -> None:
    assert await chats.queue_positions([]) == {}
    ref_a = await chat.write("visitor-aaaaaaaaaaaaa")
    await chat.write("visitor-bbbbbbbbbbbbb")
    await chat.write("visitor-ccccccccccccc")
    # A second message does not move anyone: the first waiting message counts.
    await chat.write("visitor-aaaaaaaaaaaaa", "Nog iets")
    # Other channels have queues of their own (or none).
    await intake.submit(inbound(channel=Channel.WEBFORM))
    visitors = ["visitor-aaaaaaaaaaaaa", "visitor-bbbbbbbbbbbbb", "visitor-ccccccccccccc"]
    positions = await chats.queue_positions([*visitors, "visitor-never-wrote"])
    assert positions == {
        "visitor-aaaaaaaaaaaaa": 1,
        "visitor-bbbbbbbbbbbbb": 2,
        "visitor-ccccccccccccc": 3,
        "visitor-never-wrote": None,
    }

    # The acknowledgement (queued by intake) is no answer; a queued staff reply is, even
    # before it is sent.
    acks = await rows(chat.database, OutboxRow, OUTBOX.c.purpose == "acknowledgement")
    assert len(acks) == 4
    await chat.answer(ref_a, "We kijken ernaar.")
    assert await chats.queue_positions(visitors) == {
        "visitor-aaaaaaaaaaaaa": None,
        "visitor-bbbbbbbbbbbbb": 1,
        "visitor-ccccccccccccc": 2,
    }
    # Writing again after the answer does not queue the conversation again.
    await chat.write("visitor-aaaaaaaaaaaaa", "Dank u")
    assert (await chats.queue_positions(visitors))["visitor-aaaaaaaaaaaaa"] is None

    # A resolved or closed ticket leaves the queue; a ticket waiting on the citizen does not.
    await chat.set_status(ref_b := await chat.write("visitor-bbbbbbbbbbbbb"), "resolved")
    assert ref_b
    assert await chats.queue_positions(visitors) == {
        "visitor-aaaaaaaaaaaaa": None,
        "visitor-bbbbbbbbbbbbb": None,
        "visitor-ccccccccccccc": 1,
    }


async def test_a_visitor_with_two_waiting_tickets_is_as_far_as_the_older_one(
    chat: Chat, chats: DatabaseChats, clock: Clock
) -> None:
    first = await chat.write("visitor-ddddddddddddd")
    await chat.write("visitor-eeeeeeeeeeeee")
    clock.now += timedelta(days=2)  # past the conversation window: a new ticket
    second = await chat.write("visitor-ddddddddddddd")
    assert first != second
    positions = await chats.queue_positions(["visitor-ddddddddddddd", "visitor-eeeeeeeeeeeee"])
    assert positions == {"visitor-ddddddddddddd": 1, "visitor-eeeeeeeeeeeee": 2}


async def test_the_transcript_shows_the_chat_and_its_answers_but_no_notes(
    chat: Chat, chats: DatabaseChats, database: Database
) -> None:
    visitor = "visitor-fffffffffffff"
    reference = await chat.write(
        visitor,
        "Kijk naar deze put.",
        attachments=(
            Attachment("put.jpg", "image/jpeg", 10, PHOTO),
            Attachment("virus.exe", "application/x-msdownload", 0, None, "not accepted"),
        ),
    )
    [ack] = await rows(database, OutboxRow, OUTBOX.c.purpose == "acknowledgement")
    await chat.note(reference, "Intern: dit is de derde melding van deze put.")
    reply = await chat.answer(reference, "We komen morgen kijken.")
    await chat.write(visitor, "Prima.")

    transcript = await chats.transcript(visitor)
    assert transcript.reference == reference
    assert transcript.reachable == Reachability(email=False, phone=False)
    assert [(line.sender, line.text) for line in transcript.lines] == [
        ("visitor", "Kijk naar deze put."),
        ("system", ack["body"]),
        ("staff", "We komen morgen kijken."),
        ("visitor", "Prima."),
    ]
    first = transcript.lines[0]
    assert first.client_id is not None and first.id == f"v-{first.client_id}"
    [photo] = first.attachments
    assert (photo.name, photo.content_type) == ("put.jpg", "image/jpeg")
    assert [line.id for line in transcript.lines[1:3]] == [f"o-{ack['id']}", f"o-{reply}"]
    assert [line.at for line in transcript.lines] == sorted(line.at for line in transcript.lines)

    # The same line is what a live push shows.
    live = await chats.outbound_line(reply, visitor)
    assert live == transcript.lines[2]
    assert await chats.outbound_line(reply, "visitor-someone-else") is None

    # The newest lines, oldest first.
    last_two = await chats.transcript(visitor, limit=2)
    assert [line.text for line in last_two.lines] == ["We komen morgen kijken.", "Prima."]

    # Resolved: no open reference any more, the history stays.
    await chat.set_status(reference, "resolved")
    after = await chats.transcript(visitor)
    assert after.reference is None and len(after.lines) == 4

    attachment_id = int(photo.url.rsplit("/", 1)[1])
    found = await chats.attachment(visitor, attachment_id)
    assert found is not None and (found.filename, found.sha256) == ("put.jpg", PHOTO)
    assert await chats.attachment("visitor-someone-else", attachment_id) is None
    assert await chats.attachment(visitor, attachment_id + 1) is None  # refused, no bytes


async def test_a_visitor_never_reads_another_visitor_s_chat_on_the_same_contact(
    chat: Chat, chats: DatabaseChats, database: Database
) -> None:
    email = (Identity(IdentityKind.EMAIL, "an@example.be"),)
    await chat.write("visitor-ggggggggggggg", "Mijn eerste chat.", addresses=email)
    # Someone else types the same address in another browser: same contact, another chat.
    await chat.write("visitor-hhhhhhhhhhhhh", "Een andere chat.", addresses=email)
    tickets = await rows(database, Ticket)
    assert len({t["contact_id"] for t in tickets}) == 1

    mine = await chats.transcript("visitor-hhhhhhhhhhhhh")
    assert [(line.sender, line.text) for line in mine.lines][:1] == [
        ("visitor", "Een andere chat.")
    ]
    assert all("eerste" not in line.text for line in mine.lines)
    assert [line.sender for line in mine.lines] == ["visitor", "system"]
    assert mine.reachable == Reachability(email=True, phone=False)
    assert await chats.transcript("visitor-nobody-at-all") == type(mine)()


async def test_an_e_mail_on_the_ticket_is_not_a_chat_line_but_the_answer_by_e_mail_is(
    chat: Chat, chats: DatabaseChats, intake: Intake, database: Database
) -> None:
    visitor = "visitor-iiiiiiiiiiiii"
    reference = await chat.write(
        visitor, "Vraag", addresses=(Identity(IdentityKind.EMAIL, "jo@example.be"),)
    )
    await intake.submit(
        inbound(
            "Per mail nog een vraag",
            channel=Channel.EMAIL,
            email="jo@example.be",
            hints=ThreadHints(reference=reference),
        )
    )
    assert len(await rows(database, Message, MESSAGES.c.direction == "in")) == 2
    outbox_id = await chat.answer(reference, "Antwoord")
    # The dispatcher moved it to e-mail because the visitor had left.
    async with database.engine.begin() as conn:
        await conn.execute(
            sa.update(OUTBOX).where(OUTBOX.c.id == outbox_id).values(channel="email")
        )
        await conn.execute(
            sa.update(MESSAGES).where(MESSAGES.c.direction == "out").values(channel="email")
        )
    transcript = await chats.transcript(visitor)
    assert [(line.sender, line.text) for line in transcript.lines if line.sender != "system"] == [
        ("visitor", "Vraag"),
        ("staff", "Antwoord"),
    ]
