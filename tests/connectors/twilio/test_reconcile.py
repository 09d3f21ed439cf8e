"""An SMS whose send was interrupted by a crash is reconciled with Twilio's Messages list.

The whole service (sample configuration, SQLite and PostgreSQL) against the fake Twilio API; the
crash is written into the outbox row as a dispatcher killed during its provider call leaves it,
and the test runs the dispatcher itself.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from inbox import tickets
from meldpunt.app import RUNTIME, create_app
from store.models import Message, OutboxRow, table_of
from tests.conftest import Clock
from tests.connectors.twilio.conftest import FakeTwilio, fixture
from tests.connectors.twilio.test_connector import CITIZEN, SMS_NUMBER, STATUS, twilio_env
from tests.connectors.twilio.test_cycle import LAMP, SLOW_LOOPS, ClientFactory, SmsTown
from tests.service import sample_config

OUTBOX = table_of(OutboxRow)
MESSAGES = table_of(Message)


@pytest.fixture
async def town(
    tmp_path: Path,
    database_url: str,
    aiohttp_client: ClientFactory,
    monkeypatch: pytest.MonkeyPatch,
    fake_twilio: FakeTwilio,
    clock: Clock,
) -> SmsTown:
    twilio_env(monkeypatch, fake_twilio)
    config = sample_config(tmp_path, database_url, monkeypatch, replace=SLOW_LOOPS)
    monkeypatch.setattr(tickets, "utcnow", clock)
    client = await aiohttp_client(create_app(config, migrate=True, clock=clock))
    return SmsTown(client, fake_twilio, clock)


async def crashed_acknowledgement(town: SmsTown) -> tuple[sa.RowMapping, datetime]:
    """The citizen's acknowledgement, left mid-send by a crash ten minutes ago."""
    await town.text(LAMP)
    started = town.clock.now - timedelta(minutes=10)
    async with town.db.engine.begin() as conn:
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
    [row] = await town.rows(OutboxRow)
    return row, started


async def dispatch(town: SmsTown) -> None:
    await town.client.app[RUNTIME].dispatcher.run_once()


async def test_a_message_twilio_has_is_recorded_with_its_sid_and_its_callbacks_match(
    town: SmsTown,
) -> None:
    row, started = await crashed_acknowledgement(town)
    sid = town.twilio.add_message(CITIZEN, SMS_NUMBER, row["body"], started + timedelta(seconds=2))
    # Newer messages to the citizen push it onto the list's third page.
    for n in range(205):
        town.twilio.add_message(CITIZEN, SMS_NUMBER, f"later {n}", started + timedelta(minutes=1))
    town.twilio.add_message("+32470999999", SMS_NUMBER, row["body"], started + timedelta(seconds=1))
    await dispatch(town)
    [after] = await town.rows(OutboxRow)
    assert (after["state"], after["provider_id"], after["attempts"]) == ("sent", sid, 1)
    assert town.twilio.sent() == []  # not sent a second time
    [query, _, third_page] = town.twilio.list_queries
    assert (query["To"], query["From"], query["DateSent>"]) == (CITIZEN, SMS_NUMBER, "2026-11-16")
    assert third_page["PageToken"] == "PA200"
    # Twilio's later word on that message reaches it.
    response = await town.post(STATUS, fixture("status_delivered", MessageSid=sid, SmsSid=sid))
    assert response.status == 204
    [message] = await town.rows(Message, MESSAGES.c.id == row["message_id"])
    assert (message["external_id"], message["delivery_status"]) == (sid, "delivered")


async def test_a_message_twilio_does_not_have_is_sent_once(town: SmsTown) -> None:
    row, started = await crashed_acknowledgement(town)
    # The same text went to the citizen earlier that morning: not this attempt's message.
    town.twilio.add_message(CITIZEN, SMS_NUMBER, row["body"], started - timedelta(hours=2))
    await dispatch(town)
    await dispatch(town)
    [sent] = town.twilio.sent()
    assert (sent["To"], sent["Body"]) == (CITIZEN, row["body"])
    [after] = await town.rows(OutboxRow)
    assert after["state"] == "sent" and after["reason"] is None
    assert after["provider_id"] == town.twilio.messages[-1]["sid"]


async def test_twilio_failing_to_answer_the_lookup_leaves_it_uncertain_until_it_can(
    town: SmsTown,
) -> None:
    row, started = await crashed_acknowledgement(town)
    sid = town.twilio.add_message(CITIZEN, SMS_NUMBER, row["body"], started + timedelta(seconds=1))
    town.twilio.fail_list_next = 1
    await dispatch(town)
    [after] = await town.rows(OutboxRow)
    assert (after["state"], after["lookups"]) == ("uncertain", 1)
    assert "asking SMS whether it arrived failed" in after["reason"]
    assert "HTTP 500" in after["reason"]
    await dispatch(town)
    assert len(town.twilio.list_queries) == 1  # not before the back-off
    town.clock.now += timedelta(hours=1)
    await dispatch(town)
    [after] = await town.rows(OutboxRow)
    assert (after["state"], after["provider_id"]) == ("sent", sid)
    assert town.twilio.sent() == []
