"""The dispatcher reconciles uncertain sends with the provider, on SQLite and real PostgreSQL.

A sender here is a recording fake with a ``find_sent`` that answers as scripted; the Twilio
connector against its fake API is tested in tests/connectors/twilio/test_reconcile.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from connectors.base import CannotTell, SendError
from ingest.dispatch import RECONCILED, Dispatcher, DispatchPolicy
from ingest.model import Channel, DeliveryStatus, OutboundMessage, SendResult
from store.db import Database
from store.models import Message, OutboxRow, table_of
from tests.conftest import Clock
from tests.ingest import test_dispatch
from tests.ingest.test_dispatch import FakeSender, outbox

# Three acknowledgements waiting in the outbox, as for the dispatcher's tests.
queued = test_dispatch.queued

OUTBOX = table_of(OutboxRow)
MESSAGES = table_of(Message)
POLICY = DispatchPolicy(
    backoff_seconds=10, backoff_max_seconds=60, send_timeout_seconds=5, lookup_attempts=3
)


class AskingSender(FakeSender):
    """A fake sender whose provider can be asked: ``answers`` are returned (or raised) in turn."""

    def __init__(
        self,
        *answers: SendResult | Exception | None,
        failures: int = 0,
        error: Exception | None = None,
    ) -> None:
        super().__init__(failures, error)
        self.answers = list(answers)
        self.asked: list[tuple[OutboundMessage, datetime]] = []

    async def find_sent(
        self, message: OutboundMessage, attempt_started_at: datetime
    ) -> SendResult | None:
        self.asked.append((message, attempt_started_at))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


async def crash_mid_send(db: Database, started: datetime) -> list[sa.RowMapping]:
    """Leave every row as a dispatcher killed during its provider call leaves it."""
    async with db.engine.begin() as conn:
        await conn.execute(
            sa.update(OUTBOX).values(
                state="sending", claimed_at=started, attempt_started_at=started, attempts=1
            )
        )
        await conn.execute(
            sa.update(MESSAGES)
            .where(MESSAGES.c.direction == "out")
            .values(delivery_status="sending")
        )
    return await outbox(db)


def counted(channel: str, outcome: str) -> float:
    value: float = RECONCILED.labels(channel, outcome)._value.get()
    return value


async def test_a_message_the_provider_has_becomes_sent_with_its_id(
    queued: Database, clock: Clock
) -> None:
    started = clock.now
    [first, *rest] = await crash_mid_send(queued, started)
    found = SendResult(provider_id="prov-found", status=DeliveryStatus.DELIVERED)
    sender = AskingSender(found, None, None)
    dispatcher = Dispatcher(queued.engine, {Channel.EMAIL: sender}, POLICY, clock)
    before = counted("email", "found")
    clock.now += timedelta(seconds=11)  # twice the send time-out: the crash is settled
    await dispatcher.run_once()
    # Asked once per row, about the very message and the moment its call started.
    assert [(m.outbox_id, m.recipient, m.text, at) for m, at in sender.asked] == [
        (r["id"], r["recipient"], r["body"], started) for r in [first, *rest]
    ]
    [row, *others] = await outbox(queued)
    assert (row["state"], row["provider_id"], row["reason"]) == ("sent", "prov-found", None)
    async with queued.engine.connect() as conn:
        message = (
            await conn.execute(sa.select(MESSAGES).where(MESSAGES.c.id == row["message_id"]))
        ).one()
    assert (message.delivery_status, message.external_id) == ("delivered", "prov-found")
    # The others were not there: sent again, once, in the same pass.
    assert [m.outbox_id for m in sender.sent] == [r["id"] for r in others]
    assert {r["state"] for r in others} == {"sent"}
    assert counted("email", "found") == before + 1


async def test_a_timed_out_send_is_looked_up_only_a_send_time_out_later(
    queued: Database, clock: Clock
) -> None:
    sender = AskingSender(None, error=TimeoutError(), failures=1)
    dispatcher = Dispatcher(
        queued.engine,
        {Channel.EMAIL: sender},
        DispatchPolicy(send_timeout_seconds=5),
        clock,
    )
    attempt = clock.now
    await dispatcher.run_once()
    [row, *_] = await outbox(queued)
    assert row["state"] == "uncertain" and sender.asked == []
    clock.now += timedelta(seconds=4)
    await dispatcher.run_once()
    assert sender.asked == []  # the request may still be on its way to the provider
    clock.now += timedelta(seconds=1)
    await dispatcher.run_once()
    assert [(m.outbox_id, at) for m, at in sender.asked] == [(row["id"], attempt)]
    [row, *_] = await outbox(queued)
    assert row["state"] == "sent"
    assert [m.outbox_id for m in sender.sent].count(row["id"]) == 1


async def test_a_failing_look_up_is_retried_with_back_off_then_left_to_staff(
    queued: Database, clock: Clock
) -> None:
    await crash_mid_send(queued, clock.now)
    down = SendError("the provider answered 500")
    sender = AskingSender(*[down] * 9)
    dispatcher = Dispatcher(queued.engine, {Channel.EMAIL: sender}, POLICY, clock)
    clock.now += timedelta(seconds=11)
    await dispatcher.run_once()
    [row, *_] = await outbox(queued)
    assert (row["state"], row["lookups"]) == ("uncertain", 1)
    assert "asking e-mail whether it arrived failed" in row["reason"]
    assert row["next_attempt_at"] == clock.now + timedelta(seconds=10)
    await dispatcher.run_once()
    assert len(sender.asked) == 3  # one per row: not again before the back-off
    for _ in range(5):
        clock.now += timedelta(minutes=5)
        await dispatcher.run_once()
    assert len(sender.asked) == 3 * POLICY.lookup_attempts
    rows = await outbox(queued)
    assert {(r["state"], r["lookups"]) for r in rows} == {("uncertain", 3)}
    assert "could not be asked whether the message arrived (3 tries" in rows[0]["reason"]
    assert "'send again' or 'it arrived'" in rows[0]["reason"]
    assert sender.sent == []


async def test_a_provider_that_cannot_tell_leaves_the_row_to_staff(
    queued: Database, clock: Clock
) -> None:
    await crash_mid_send(queued, clock.now)
    sender = AskingSender(*[CannotTell("no way to ask")] * 3)
    dispatcher = Dispatcher(queued.engine, {Channel.EMAIL: sender}, POLICY, clock)
    clock.now += timedelta(seconds=11)
    await dispatcher.run_once()
    clock.now += timedelta(hours=3)
    await dispatcher.run_once()
    assert len(sender.asked) == 3  # once each, never again
    rows = await outbox(queued)
    assert {r["state"] for r in rows} == {"uncertain"}
    assert "e-mail gives no way to check whether it arrived" in rows[0]["reason"]
    assert sender.sent == []
