"""An SMS whose send was interrupted by a crash is reconciled with Twilio's Messages list.

The whole service (sample configuration, SQLite and PostgreSQL) against the fake Twilio API; the
crash is written into the outbox row as a dispatcher killed during its provider call leaves it,
and the test runs the dispatcher itself.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from meldpunt.app import RUNTIME
from store.models import Message, OutboxRow, table_of
from tests.connectors.twilio import test_cycle
from tests.connectors.twilio.conftest import fixture
from tests.connectors.twilio.test_connector import CITIZEN, SMS_NUMBER, STATUS
from tests.connectors.twilio.test_cycle import LAMP, SmsTown
from tests.ingest.test_reconcile import crash_mid_send

# The town of the follow-up cycle tests: Twilio faked, the loops slowed down, one clock.
town = test_cycle.town

OUTBOX = table_of(OutboxRow)
MESSAGES = table_of(Message)


async def crashed_acknowledgement(town: SmsTown) -> tuple[sa.RowMapping, datetime]:
    """The citizen's acknowledgement, left mid-send by a crash ten minutes ago."""
    await town.text(LAMP)
    started = town.clock.now - timedelta(minutes=10)
    [row] = await crash_mid_send(town.db, started)
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
