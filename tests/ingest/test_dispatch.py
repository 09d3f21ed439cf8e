"""The dispatcher against a recording fake sender, on SQLite and real PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
import sqlalchemy as sa

from connectors.base import SendError
from ingest.dispatch import Dispatcher, DispatchPolicy
from ingest.model import (
    Channel,
    DeliveryStatus,
    OutboundAttachment,
    OutboundMessage,
    SendResult,
)
from ingest.pipeline import Intake, IntakePolicy
from store.db import Database
from store.models import AttachmentRow, Message, OutboxRow, Ticket, table_of
from store.outbox import OutboundDraft, queue_outbound
from tests.conftest import Clock
from tests.messages import inbound, sample_rules

OUTBOX = table_of(OutboxRow)


class FakeSender:
    """Records every send; fails the first ``failures`` calls with the given error."""

    def __init__(self, failures: int = 0, error: Exception | None = None, delay: float = 0) -> None:
        self.sent: list[OutboundMessage] = []
        self.failures = failures
        self.error = error or SendError("provider answered 503")
        self.delay = delay

    async def send(self, message: OutboundMessage) -> SendResult:
        await asyncio.sleep(self.delay)
        if self.failures:
            self.failures -= 1
            raise self.error
        self.sent.append(message)
        return SendResult(provider_id=f"prov-{message.outbox_id}", status=DeliveryStatus.SENT)


@pytest.fixture
async def queued(database: Database, clock: Clock) -> Database:
    """Three tickets from e-mail citizens, so three acknowledgements wait in the outbox."""
    rules = sample_rules()
    intake = Intake(database.engine, lambda: rules, IntakePolicy(reference_prefix="T"), clock)
    await intake.start()
    for n in range(3):
        await intake.submit(
            inbound(f"bericht {n}", channel=Channel.EMAIL, email=f"burger{n}@example.be")
        )
    await intake.stop()
    return database


async def outbox(db: Database) -> list[sa.RowMapping]:
    async with db.engine.connect() as conn:
        return list((await conn.execute(sa.select(OUTBOX).order_by(OUTBOX.c.id))).mappings())


def policy(**kw: float) -> DispatchPolicy:
    return DispatchPolicy(backoff_seconds=10, backoff_max_seconds=60, send_timeout_seconds=5, **kw)  # type: ignore[arg-type]


async def test_due_rows_are_sent_once_and_the_provider_id_recorded(
    queued: Database, clock: Clock
) -> None:
    sender = FakeSender()
    dispatcher = Dispatcher(queued.engine, {Channel.EMAIL: sender}, policy(), clock)
    assert await dispatcher.run_once() == 3
    assert await dispatcher.run_once() == 0
    assert [m.recipient for m in sender.sent] == [f"burger{n}@example.be" for n in range(3)]
    rows = await outbox(queued)
    assert {r["state"] for r in rows} == {"sent"}
    assert rows[0]["provider_id"] == f"prov-{rows[0]['id']}"
    async with queued.engine.connect() as conn:
        statuses = (
            (
                await conn.execute(
                    sa.select(table_of(Message).c.delivery_status).where(
                        table_of(Message).c.direction == "out"
                    )
                )
            )
            .scalars()
            .all()
        )
    assert set(statuses) == {"sent"}


async def test_transient_failures_retry_with_backoff(queued: Database, clock: Clock) -> None:
    sender = FakeSender(failures=2)
    dispatcher = Dispatcher(queued.engine, {Channel.EMAIL: sender}, policy(batch=1), clock)
    await dispatcher.run_once()
    [first, *_] = await outbox(queued)
    assert first["state"] == "pending" and first["attempts"] == 1
    assert first["next_attempt_at"] == clock.now + timedelta(seconds=10)
    assert "503" in first["reason"]
    # Not due yet: the other rows go first, this one waits.
    clock.now += timedelta(seconds=11)
    await dispatcher.run_once()  # second failure (on the oldest due row)
    clock.now += timedelta(seconds=21)
    for _ in range(4):
        await dispatcher.run_once()
    rows = await outbox(queued)
    assert {r["state"] for r in rows} == {"sent"}
    assert len(sender.sent) == 3
    assert rows[0]["reason"] is None


async def test_permanent_failure_or_last_attempt_marks_the_row_failed(
    queued: Database, clock: Clock
) -> None:
    sender = FakeSender(failures=99, error=SendError("no such mailbox", permanent=True))
    dispatcher = Dispatcher(queued.engine, {Channel.EMAIL: sender}, policy(), clock)
    await dispatcher.run_once()
    rows = await outbox(queued)
    assert {r["state"] for r in rows} == {"failed"}
    assert "no such mailbox" in rows[0]["reason"]

    flaky = FakeSender(failures=99)
    async with queued.engine.begin() as conn:
        await conn.execute(sa.update(OUTBOX).values(state="pending", attempts=0, reason=None))
    dispatcher = Dispatcher(queued.engine, {Channel.EMAIL: flaky}, policy(max_attempts=2), clock)
    await dispatcher.run_once()
    clock.now += timedelta(minutes=5)
    await dispatcher.run_once()
    rows = await outbox(queued)
    assert {(r["state"], r["attempts"]) for r in rows} == {("failed", 2)}


async def test_two_dispatchers_never_send_a_row_twice(queued: Database, clock: Clock) -> None:
    other = Database(queued.url)
    sender = FakeSender(delay=0.05)
    try:
        a = Dispatcher(queued.engine, {Channel.EMAIL: sender}, policy(), clock)
        b = Dispatcher(other.engine, {Channel.EMAIL: sender}, policy(), clock)
        await asyncio.gather(a.run_once(), b.run_once(), a.run_once(), b.run_once())
    finally:
        await other.close()
    assert sorted(m.outbox_id for m in sender.sent) == [r["id"] for r in await outbox(queued)]


async def test_a_send_interrupted_by_a_crash_is_not_repeated(
    queued: Database, clock: Clock
) -> None:
    async with queued.engine.begin() as conn:  # as a dispatcher killed mid-send leaves it
        await conn.execute(
            sa.update(OUTBOX).values(state="sending", claimed_at=clock.now, attempts=1)
        )
    sender = FakeSender()
    dispatcher = Dispatcher(queued.engine, {Channel.EMAIL: sender}, policy(), clock)
    await dispatcher.run_once()
    assert sender.sent == []  # still within the send time-out: maybe the other process is busy
    clock.now += timedelta(seconds=11)
    await dispatcher.run_once()
    rows = await outbox(queued)
    assert sender.sent == []
    assert {r["state"] for r in rows} == {"uncertain"}
    assert "not sent again" in rows[0]["reason"]


async def test_rows_without_a_connector_wait_with_a_visible_reason(
    queued: Database, clock: Clock
) -> None:
    dispatcher = Dispatcher(queued.engine, {}, policy(), clock)
    assert await dispatcher.run_once() == 0
    rows = await outbox(queued)
    assert {r["state"] for r in rows} == {"pending"}
    assert all("no connector is configured for the email channel" in r["reason"] for r in rows)


async def test_a_reply_reaches_the_connector_with_its_files(queued: Database, clock: Clock) -> None:
    pdf = OutboundAttachment("offerte.pdf", "application/pdf", 2048, "a" * 64)
    photo = OutboundAttachment("foto stoep.jpg", "image/jpeg", 4096, "b" * 64)
    async with queued.session() as session:
        ticket_id = await session.scalar(sa.select(sa.func.min(table_of(Ticket).c.id)))
        assert ticket_id is not None
        [(message_id, _)] = await queue_outbound(
            await session.connection(),
            [OutboundDraft(ticket_id, "email", "burger0@example.be", "Zie bijlage.", "reply")],
            clock.now,
        )
        session.add_all(
            [
                _row(message_id, pdf),
                # A file recorded without its bytes has nothing to send.
                AttachmentRow(
                    message_id=message_id,
                    filename="virus.exe",
                    content_type="application/octet-stream",
                    size=10,
                    removed_reason="refused",
                ),
                _row(message_id, photo),
            ]
        )
    sender = FakeSender()
    dispatcher = Dispatcher(queued.engine, {Channel.EMAIL: sender}, policy(), clock)
    assert await dispatcher.run_once() == 4
    [reply] = [m for m in sender.sent if not m.automatic]
    assert reply.attachments == (pdf, photo)
    # The acknowledgements have no files of their own.
    assert [m.attachments for m in sender.sent if m.automatic] == [(), (), ()]


def _row(message_id: int, attachment: OutboundAttachment) -> AttachmentRow:
    return AttachmentRow(
        message_id=message_id,
        filename=attachment.filename,
        content_type=attachment.content_type,
        size=attachment.size,
        sha256=attachment.sha256,
    )
