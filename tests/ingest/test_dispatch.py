"""The dispatcher against a recording fake sender, on SQLite and real PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import aiohttp
import aiosmtplib
import httpx
import pytest
import sqlalchemy as sa
from telegram.error import TimedOut

from connectors.base import SendError
from ingest.dispatch import Dispatcher, DispatchPolicy, maybe_delivered
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
from tests.conftest import Clock, free_port
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
            sa.update(OUTBOX).values(
                state="sending", claimed_at=clock.now, attempt_started_at=clock.now, attempts=1
            )
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


# --- sends that time out, and crashes between claiming and sending ---------------------------


def quick(**kw: float) -> DispatchPolicy:
    """A policy whose send time-out a test can wait out for real."""
    values: dict[str, float] = {
        "backoff_seconds": 10,
        "backoff_max_seconds": 60,
        "send_timeout_seconds": 0.3,
    }
    return DispatchPolicy(**(values | kw))  # type: ignore[arg-type]


class SilentProvider:
    """A provider on 127.0.0.1 that reads every request and never answers it."""

    def __init__(self) -> None:
        self.requests = 0
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        self.requests += 1
        await reader.read()  # until the client gives up
        writer.close()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


class HttpSender:
    """Posts each message to ``url`` and wraps client errors as the real connectors do."""

    def __init__(self, url: str, timeout: float = 10) -> None:
        self.url = url
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def send(self, message: OutboundMessage) -> SendResult:
        try:
            async with (
                aiohttp.ClientSession(timeout=self.timeout) as http,
                http.post(self.url, data=message.text) as answer,
            ):
                await answer.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SendError(f"the provider could not be reached ({type(exc).__name__})") from exc
        return SendResult(provider_id="p", status=DeliveryStatus.SENT)


async def message_statuses(db: Database) -> list[str]:
    messages = table_of(Message)
    async with db.engine.connect() as conn:
        found = await conn.execute(
            sa.select(messages.c.delivery_status)
            .where(messages.c.direction == "out")
            .order_by(messages.c.id)
        )
        return [str(s) for s in found.scalars()]


@pytest.mark.parametrize("timed_out_by", ["dispatcher", "connector"])
async def test_a_send_that_times_out_after_the_request_went_out_is_uncertain_not_resent(
    queued: Database, clock: Clock, timed_out_by: str
) -> None:
    provider = SilentProvider()
    port = await provider.start()
    try:
        # Either the dispatcher's send time-out fires, or the connector's own client time-out.
        sender = HttpSender(
            f"http://127.0.0.1:{port}/send", 30 if timed_out_by == "dispatcher" else 0.2
        )
        dispatcher = Dispatcher(queued.engine, {Channel.EMAIL: sender}, quick(batch=1), clock)
        await dispatcher.run_once()
        [first, *rest] = await outbox(queued)
        assert provider.requests == 1
        assert (first["state"], first["attempts"]) == ("uncertain", 1)
        assert "may or may not have arrived" in first["reason"]
        assert "not sent again" in first["reason"]
        assert (await message_statuses(queued))[0] == "uncertain"
        # Later passes, long after any back-off, leave it alone: staff decide.
        clock.now += timedelta(hours=2)
        for _ in range(3):
            await dispatcher.run_once()
        assert provider.requests == 3  # the two other rows, once each (uncertain as well)
        assert [r["state"] for r in await outbox(queued)] == ["uncertain"] * 3
        assert rest
    finally:
        await provider.stop()


async def test_a_refused_connection_is_retried_as_nothing_was_sent(
    queued: Database, clock: Clock
) -> None:
    sender = HttpSender(f"http://127.0.0.1:{free_port()}/send")  # nobody listens there
    dispatcher = Dispatcher(queued.engine, {Channel.EMAIL: sender}, quick(batch=1), clock)
    await dispatcher.run_once()
    first = (await outbox(queued))[0]
    assert (first["state"], first["attempts"]) == ("pending", 1)
    assert "ClientConnectorError" in first["reason"]
    assert first["next_attempt_at"] == clock.now + timedelta(seconds=10)
    assert (await message_statuses(queued))[0] == "pending"


def _raised(*chain: BaseException) -> BaseException:
    """The outermost of ``chain``, each raised from the next, as real code leaves them."""
    outer: BaseException | None = None
    for exc in reversed(chain):
        try:
            raise exc from outer
        except BaseException as caught:
            outer = caught
    assert outer is not None
    return outer


@pytest.mark.parametrize(
    ("chain", "maybe"),
    [
        ((TimeoutError(),), True),  # the dispatcher's own send time-out
        ((SendError("x"), aiohttp.SocketTimeoutError("read")), True),  # Twilio, Messenger
        ((SendError("x"), aiosmtplib.SMTPReadTimeoutError("data")), True),  # e-mail
        ((SendError("x"), TimedOut(), httpx.ReadTimeout("read")), True),  # Telegram
        ((SendError("x"), aiohttp.ConnectionTimeoutError("connect")), False),
        ((SendError("x"), aiosmtplib.SMTPConnectTimeoutError("connect")), False),
        ((SendError("x"), TimedOut(), httpx.ConnectTimeout("connect")), False),
        ((SendError("x"), TimedOut(), httpx.PoolTimeout("pool")), False),
        ((SendError("x"), ConnectionRefusedError(111, "refused")), False),
        ((SendError("provider answered 503"),), False),
        ((SendError("x"), aiohttp.ServerDisconnectedError()), False),
    ],
)
def test_which_failures_may_have_reached_the_provider(
    chain: tuple[BaseException, ...], maybe: bool
) -> None:
    assert maybe_delivered(_raised(*chain)) is maybe


class HangingSender(FakeSender):
    """Takes the first message and hangs, as a provider call does when the process is killed."""

    def __init__(self) -> None:
        super().__init__()
        self.called = asyncio.Event()

    async def send(self, message: OutboundMessage) -> SendResult:
        self.sent.append(message)
        self.called.set()
        await asyncio.Event().wait()
        raise AssertionError("never answers")


async def test_after_a_crash_only_the_row_being_sent_is_uncertain(
    queued: Database, clock: Clock
) -> None:
    hanging = HangingSender()
    killed = Dispatcher(queued.engine, {Channel.EMAIL: hanging}, policy(), clock)
    run = asyncio.create_task(killed.run_once())
    await asyncio.wait_for(hanging.called.wait(), 10)
    run.cancel()  # nothing of the dispatcher runs after this point, as after a SIGKILL
    with contextlib.suppress(asyncio.CancelledError):
        await run
    [started] = hanging.sent
    assert [r["state"] for r in await outbox(queued)] == ["sending"] * 3

    sender = FakeSender()
    restarted = Dispatcher(queued.engine, {Channel.EMAIL: sender}, policy(), clock)
    await restarted.run_once()
    assert sender.sent == []  # within twice the send time-out the first worker may be alive
    clock.now += timedelta(seconds=11)
    await restarted.run_once()
    rows = await outbox(queued)
    assert {r["id"]: r["state"] for r in rows} == {
        r["id"]: "uncertain" if r["id"] == started.outbox_id else "sent" for r in rows
    }
    assert sorted(m.outbox_id for m in sender.sent) == [
        r["id"] for r in rows if r["id"] != started.outbox_id
    ]
    # The rows that never left count no attempt for the crash.
    assert [r["attempts"] for r in rows] == [1, 1, 1]
    statuses = await message_statuses(queued)
    assert sorted(statuses) == ["sent", "sent", "uncertain"]


async def test_a_slow_worker_skips_a_claimed_row_another_worker_took_back(
    queued: Database, clock: Clock
) -> None:
    sent: list[int] = []
    other = Dispatcher(queued.engine, {Channel.EMAIL: FakeSender()}, policy(), clock)

    class SlowSender(FakeSender):
        """Each call takes six (test) seconds; during the second, another worker runs a pass."""

        async def send(self, message: OutboundMessage) -> SendResult:
            sent.append(message.outbox_id)
            clock.now += timedelta(seconds=6)
            if len(sent) == 2:
                await other.run_once()
            return SendResult(provider_id=f"slow-{message.outbox_id}", status=DeliveryStatus.SENT)

    slow = Dispatcher(queued.engine, {Channel.EMAIL: SlowSender()}, policy(), clock)
    await slow.run_once()
    ids = [r["id"] for r in await outbox(queued)]
    taken_back = other._senders[Channel.EMAIL]
    assert isinstance(taken_back, FakeSender)
    # The third row waited twelve seconds unsent: the other worker took it back and sent it; the
    # second, whose call had started six seconds before, was left to the slow worker.
    assert sent == ids[:2]
    assert [m.outbox_id for m in taken_back.sent] == ids[2:]
    assert [r["state"] for r in await outbox(queued)] == ["sent"] * 3
