"""The follow-up cycle as a citizen lives it by SMS: Twilio's signed webhooks in, the fake Twilio
API out, staff acting through the REST API, and a clock the test moves.

The whole service runs with the sample configuration. Its own background loops are slowed
down, so the test decides when timers run and when the outbox is sent; what the citizen reads
is what the fake Twilio API accepted for their number.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from inbox import tickets
from meldpunt.app import RUNTIME, create_app
from store.models import Contact, Ticket
from tests.conftest import Clock
from tests.connectors.twilio.conftest import FakeTwilio, fixture
from tests.connectors.twilio.test_connector import CITIZEN, MESSAGING, SMS_NUMBER, twilio_env
from tests.connectors.twilio.test_connector import Town as TwilioTown
from tests.service import sample_config

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[Client]]

BRUSSELS = ZoneInfo("Europe/Brussels")
FIRST = "1750-000001"
LAMP = "De straatlamp in de Kerkstraat brandt niet meer."
# The test runs timers and the outbox itself: the service's own loops wait an hour.
SLOW_LOOPS = {
    "routing:\n  file:": "dispatch: {interval_seconds: 3600}\nrouting:\n  file:",
    "interval_seconds: 30 ": "interval_seconds: 3600 ",
}


def at(text: str) -> datetime:
    """A moment in the town's time: ``at("2026-11-16 11:00")``."""
    return datetime.fromisoformat(text).replace(tzinfo=BRUSSELS)


def moment(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


@dataclass
class SmsTown(TwilioTown):
    """The service, the citizen's phone and the clock."""

    clock: Clock = field(default_factory=Clock)
    _sids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _read: int = 0

    async def text(self, body: str) -> None:
        """The citizen sends an SMS; Twilio posts it, signed, as it does."""
        # Not of the form the fake gives the messages meldpunt sends (SM000...1).
        sid = f"SMc{next(self._sids):031x}"
        form = fixture("sms", MessageSid=sid, SmsMessageSid=sid, SmsSid=sid, Body=body)
        response = await self.post(MESSAGING, form)
        assert response.status == 200, await response.text()

    async def inbox(self) -> list[str]:
        """Send what is due, then the SMS the citizen got since the last look, oldest first."""
        await self.client.app[RUNTIME].dispatcher.run_once()
        mine = [m for m in self.twilio.sent() if m["To"] == CITIZEN]
        assert all(m["From"] == SMS_NUMBER for m in mine)
        new, self._read = mine[self._read :], len(mine)
        return [m["Body"] for m in new]

    async def later(self, when: datetime) -> int:
        """Move the clock and run the timers that are due; how many ran."""
        return await self.let_time_pass(self.clock, when)

    async def set_status(self, reference: str, **body: str) -> None:
        status, answer = await self.staff_api("POST", f"/tickets/{reference}/status", body)
        assert status == 200, answer


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
    # Staff act through the API on the same clock as intake, the timers and the dispatcher.
    monkeypatch.setattr(tickets, "utcnow", clock)
    client = await aiohttp_client(create_app(config, migrate=True, clock=clock))
    return SmsTown(client, fake_twilio, clock)


# 1. The acknowledgement


async def test_the_acknowledgement_comes_at_once_with_the_reference_and_the_answer_day(
    town: SmsTown,
) -> None:
    town.clock.now = at("2026-11-16 11:00")  # a Monday, the office is open
    await town.text(LAMP)
    # Three working days: Tuesday, Wednesday and Thursday.
    assert await town.inbox() == [
        "Wingene: we hebben uw bericht ontvangen. Uw nummer is 1750-000001. "
        "U krijgt een antwoord ten laatste op donderdag 19 november."
    ]
    ticket = await town.ticket(FIRST)
    assert moment(ticket["deadlines"]["first_answer_due"]) == at("2026-11-19 23:59:59")


@pytest.mark.parametrize(
    ("written", "opens"),
    [
        ("2026-11-22 15:00", "maandag 23 november om 08:30"),  # a Sunday afternoon
        ("2026-11-18 20:00", "donderdag 19 november om 08:30"),  # a late Wednesday evening
        # Christmas Eve is a closing day; then Christmas, the town's closing day and Sunday.
        ("2026-12-24 10:00", "maandag 28 december om 08:30"),
    ],
)
async def test_out_of_office_hours_the_acknowledgement_says_when_the_office_opens(
    town: SmsTown, written: str, opens: str
) -> None:
    town.clock.now = at(written)
    await town.text(LAMP)
    assert await town.inbox() == [
        "Wingene: bericht ontvangen, nummer 1750-000001. We zijn nu gesloten. "
        f"We lezen het vanaf {opens}. Dringend? Bel 112."
    ]


# 2. Waiting for the citizen


async def test_while_staff_wait_for_the_citizen_the_clock_stands_still(town: SmsTown) -> None:
    town.clock.now = at("2026-11-16 11:00")
    await town.text(LAMP)
    await town.inbox()
    due = moment((await town.ticket(FIRST))["deadlines"]["first_answer_due"])
    assert due == at("2026-11-19 23:59:59")

    town.clock.now = at("2026-11-17 11:00")
    await town.set_status(FIRST, status="pending")
    ticket = await town.ticket(FIRST)
    assert ticket["status"] == "pending"
    assert ticket["deadlines"]["paused"] is True

    # Past the first-answer deadline, nothing escalates while the town waits for the citizen.
    assert await town.later(at("2026-11-20 10:00")) == 0
    ticket = await town.ticket(FIRST)
    assert ticket["deadlines"]["overdue"] is False
    assert await town.outbox("deadline_warning") == []
    assert await town.outbox("deadline_missed") == []

    # Three days later the citizen answers by SMS: the same ticket is open again.
    town.clock.now = at("2026-11-20 11:00")
    await town.text("Het is de lamp voor huisnummer 12.")
    assert len(await town.rows(Ticket)) == 1
    ticket = await town.ticket(FIRST)
    assert ticket["status"] == "open"
    assert ticket["deadlines"]["paused"] is False
    # 11 hours of Tuesday were used before the pause; the other 61 run from Friday 11:00:
    # 13 hours of Friday, all of Monday and all of Tuesday 24 November.
    moved = moment(ticket["deadlines"]["first_answer_due"])
    assert moved == at("2026-11-24 23:59:59")
    assert moved is not None and due is not None and moved > due
    # The timers follow the moved deadline: the warning comes a day before it, not earlier.
    assert await town.later(at("2026-11-23 12:00")) == 0
    assert await town.later(at("2026-11-24 09:00")) == 1
    assert len(await town.outbox("deadline_warning")) == 1


# 3. The answer, the survey and the ombudsman


async def resolved_and_asked(town: SmsTown) -> None:
    """A report answered and resolved on Wednesday; the survey comes on Thursday."""
    town.clock.now = at("2026-11-16 11:00")
    await town.text(LAMP)
    await town.inbox()
    town.clock.now = at("2026-11-18 14:00")
    await town.set_status(FIRST, status="resolved", answer="De lamp is vanmorgen vervangen.")
    assert await town.inbox() == ["De lamp is vanmorgen vervangen. (nummer 1750-000001: behandeld)"]
    assert (await town.ticket(FIRST))["status"] == "resolved"

    # No survey before the day has passed.
    assert await town.later(at("2026-11-19 13:59")) == 0
    assert await town.inbox() == []
    assert await town.later(at("2026-11-19 14:01")) == 1
    assert await town.inbox() == [
        "Wingene: hoe tevreden bent u over onze hulp (1750-000001)? "
        "Antwoord met 1 (heel slecht) tot 5 (heel goed). Geen vragen meer? Antwoord STOP."
    ]
    assert (await town.ticket(FIRST))["survey"] == "asked"


THANKS = "Bedankt voor uw antwoord. Zo kunnen we onze hulp beter maken."
OMBUDSMAN = (
    "Jammer dat u niet tevreden bent. U kunt terecht bij de ombudsdienst van Wingene, "
    "051 65 95 99, https://www.wingene.example/ombudsdienst. Vermeld 1750-000001."
)


@pytest.mark.parametrize(
    ("reply", "score", "comment", "answer"),
    [
        ("4", 4, None, THANKS),
        ("vier", 4, None, THANKS),
        ("quatre", 4, None, THANKS),
        ("😊", 4, None, THANKS),
        ("5 top!", 5, "5 top!", THANKS),
        ("slecht", 2, None, OMBUDSMAN),
    ],
)
async def test_the_citizen_answers_the_survey_by_sms_and_is_thanked_or_sent_to_the_ombudsman(
    town: SmsTown, reply: str, score: int, comment: str | None, answer: str
) -> None:
    await resolved_and_asked(town)
    town.clock.now = at("2026-11-19 18:30")
    await town.text(reply)
    assert await town.inbox() == [answer]
    ticket = await town.ticket(FIRST)
    assert (ticket["survey"], ticket["satisfaction"]) == ("answered", score)
    assert ticket["satisfaction_comment"] == comment
    # An answer to the survey reopens nothing and makes no new ticket.
    assert ticket["status"] == "resolved"
    assert len(await town.rows(Ticket)) == 1
    low = await town.outbox("low_score")
    if score <= 2:
        # The department's head hears of it by e-mail, and the ticket counts as escalated.
        assert [(r["channel"], r["recipient"]) for r in low] == [
            ("email", "diensthoofd.td@wingene.example")
        ]
        assert moment(ticket["deadlines"]["escalated_at"]) == at("2026-11-19 18:30")
    else:
        assert low == []


# 4. No more questions


async def test_stop_after_a_survey_means_no_survey_for_the_next_matter(town: SmsTown) -> None:
    await resolved_and_asked(town)
    town.clock.now = at("2026-11-19 18:30")
    await town.text("STOP")
    [contact] = await town.rows(Contact)
    assert contact["no_surveys"] is True
    assert (await town.ticket(FIRST))["satisfaction"] is None

    # Weeks later the same citizen reports something else; it is answered and resolved.
    town.clock.now = at("2026-12-14 10:00")
    await town.text("Er ligt afval naast de glasbol aan de sporthal.")
    assert len(await town.inbox()) == 1  # the acknowledgement
    second = (await town.rows(Ticket))[-1]["reference"]
    assert second != FIRST
    town.clock.now = at("2026-12-15 10:00")
    await town.set_status(second, status="resolved", answer="Het afval is opgeruimd.")
    assert await town.inbox() == ["Het afval is opgeruimd. (nummer 1750-000002: behandeld)"]
    await town.later(at("2026-12-20 10:00"))
    assert await town.inbox() == []
    assert (await town.ticket(second))["survey"] is None
