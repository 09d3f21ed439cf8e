"""The follow-up cycle as a visitor of the town's website lives it in the web chat: the widget's
WebSocket, staff acting through the REST API, and a clock the test moves.

The whole service runs with the sample configuration. Its own background loops are slowed
down, so the test decides when timers run and when the outbox is sent; what the visitor reads
is what arrives on their socket, or what the chat shows them when they come back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from inbox import tickets
from meldpunt.app import RUNTIME, create_app
from store.models import Ticket
from tests.conftest import Clock
from tests.connectors.email.conftest import Start
from tests.connectors.webchat.conftest import (
    PUBLIC_URL,
    TOWN_ADDRESS,
    Recorder,
    Town,
    Visitor,
)
from tests.service import SAMPLE, sample_config

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[Client]]

BRUSSELS = ZoneInfo("Europe/Brussels")
FIRST = "1750-000001"
LAMP = "De straatlamp in de Kerkstraat brandt niet meer."
# The test runs timers and the outbox itself: the service's own loops wait an hour. A visitor
# who closes the chat has left at once.
SLOW_LOOPS = {
    "routing:\n  file:": "dispatch: {interval_seconds: 3600}\nrouting:\n  file:",
    "interval_seconds: 30 ": "interval_seconds: 3600 ",
    "grace_seconds: 30 ": "grace_seconds: 0 ",
}
# A visitor may choose the kind in the widget (test_kind.py); here the visitor does not, and the
# town recognises compliments in the chat by their words. The rule stands first: the topic rules
# below it set "report" only on a message without a kind.
PRAISE_RULE = """rules:
  - id: lof-in-de-chat
    description: Complimenten in de chat
    when:
      channel: webchat
      words: [proficiat, pluim, bedankt, dankjewel, dankuwel]
    then:
      kind: compliment
      tags: [compliment]
"""


def at(text: str) -> datetime:
    """A moment in the town's time: ``at("2026-11-16 11:00")``."""
    return datetime.fromisoformat(text).replace(tzinfo=BRUSSELS)


def moment(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def by(sender: str) -> Callable[[dict[str, Any]], bool]:
    return lambda frame: frame["from"] == sender


@dataclass
class ChatTown(Town):
    """The service, the SMTP server its e-mail reaches, and the clock."""

    clock: Clock = field(default_factory=Clock)

    async def send_due(self) -> None:
        await self.client.app[RUNTIME].dispatcher.run_once()

    async def later(self, when: datetime) -> int:
        """Move the clock and run the timers that are due; how many ran."""
        return await self.let_time_pass(self.clock, when)

    async def line(self, visitor: Visitor, sender: str = "system") -> str:
        """Send what is due; the text of the next chat line from ``sender`` the visitor sees."""
        await self.send_due()
        frame = await visitor.frame("message", by(sender))
        return str(frame["text"])

    async def set_status(self, reference: str, **body: str) -> None:
        status, answer = await self.staff_api("POST", f"/tickets/{reference}/status", body)
        assert status == 200, answer


StartTown = Callable[..., Awaitable[ChatTown]]


@pytest.fixture
def start_town(
    tmp_path: Path,
    database_url: str,
    aiohttp_client: ClientFactory,
    monkeypatch: pytest.MonkeyPatch,
    start_smtp: Start,
    clock: Clock,
) -> StartTown:
    """Starts the service on the test's clock; ``praise=True`` adds ``PRAISE_RULE``."""

    async def start(*, praise: bool = False) -> ChatTown:
        recorder = Recorder()
        port = await start_smtp(recorder)
        for name, value in {
            "MELDPUNT_PUBLIC_URL": PUBLIC_URL,
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(port),
            "SMTP_TLS": "none",
            "SMTP_FROM": TOWN_ADDRESS,
        }.items():
            monkeypatch.setenv(name, value)
        for name in ("IMAP_HOST", "IMAP_USER"):
            monkeypatch.delenv(name, raising=False)
        replace = dict(SLOW_LOOPS)
        if praise:
            rules = tmp_path / "routing-with-praise.yaml"
            sample = (SAMPLE / "routing.yaml").read_text(encoding="utf-8")
            assert "\nrules:\n" in sample
            rules.write_text(sample.replace("\nrules:\n", f"\n{PRAISE_RULE}", 1), "utf-8")
            replace["file: routing.yaml"] = f"file: {rules}"
        config = sample_config(tmp_path, database_url, monkeypatch, replace=replace)
        # Staff act through the API on the same clock as intake, the timers and the dispatcher.
        monkeypatch.setattr(tickets, "utcnow", clock)
        client = await aiohttp_client(create_app(config, migrate=True, clock=clock))
        town = ChatTown(client, recorder, clock)
        return town

    return start


@pytest.fixture
async def town(start_town: StartTown) -> ChatTown:
    return await start_town()


# 1. The acknowledgement


@pytest.mark.parametrize(
    ("written", "acknowledgement"),
    [
        (
            "2026-11-16 11:00",  # a Monday morning: three working days, to Thursday
            "Bedankt, we hebben uw bericht ontvangen. Uw nummer is 1750-000001. "
            "U krijgt een antwoord ten laatste op donderdag 19 november.",
        ),
        (
            "2026-11-22 15:00",  # a Sunday afternoon
            "Bedankt, we hebben uw bericht ontvangen. Uw nummer is 1750-000001. "
            "We zijn nu gesloten. We lezen uw bericht vanaf maandag 23 november om 08:30. "
            "Dringend? Bel 112.",
        ),
    ],
)
async def test_the_acknowledgement_shows_in_the_chat_at_once(
    town: ChatTown, written: str, acknowledgement: str
) -> None:
    town.clock.now = at(written)
    visitor = await town.open_chat()
    received = await visitor.say(LAMP)
    assert received["reference"] == FIRST
    assert await town.line(visitor) == acknowledgement


# 2. Waiting for the citizen


async def test_while_staff_wait_for_the_visitor_the_clock_stands_still(town: ChatTown) -> None:
    town.clock.now = at("2026-11-16 11:00")
    visitor = await town.open_chat()
    await visitor.say(LAMP)
    await town.line(visitor)
    due = moment((await town.ticket(FIRST))["deadlines"]["first_answer_due"])
    assert due == at("2026-11-19 23:59:59")

    town.clock.now = at("2026-11-17 11:00")
    await town.set_status(FIRST, status="pending")
    ticket = await town.ticket(FIRST)
    assert (ticket["status"], ticket["deadlines"]["paused"]) == ("pending", True)
    await visitor.close()

    # Past the first-answer deadline, nothing escalates while the town waits for the visitor.
    assert await town.later(at("2026-11-20 10:00")) == 0
    assert (await town.ticket(FIRST))["deadlines"]["overdue"] is False
    assert await town.outbox("deadline_warning") == []
    assert await town.outbox("deadline_missed") == []

    # Three days later the visitor comes back to the chat and answers: the same ticket is open
    # again.
    town.clock.now = at("2026-11-20 11:00")
    back = await town.open_chat(visitor.token)
    assert back.welcome["reference"] == FIRST
    assert (await back.say("Het is de lamp voor huisnummer 12."))["reference"] == FIRST
    assert len(await town.rows(Ticket)) == 1
    ticket = await town.ticket(FIRST)
    assert (ticket["status"], ticket["deadlines"]["paused"]) == ("open", False)
    # 11 hours of Tuesday were used before the pause; the other 61 run from Friday 11:00:
    # 13 hours of Friday, all of Monday and all of Tuesday 24 November.
    moved = moment(ticket["deadlines"]["first_answer_due"])
    assert moved == at("2026-11-24 23:59:59")
    assert moved is not None and due is not None and moved > due
    assert await town.later(at("2026-11-23 12:00")) == 0
    assert await town.later(at("2026-11-24 09:00")) == 1
    assert len(await town.outbox("deadline_warning")) == 1


# 3. The answer, the survey and the ombudsman


@pytest.mark.parametrize(
    ("reply", "score", "answer"),
    [
        ("4", 4, "Bedankt voor uw antwoord. Zo kunnen we onze hulp beter maken."),
        ("slecht, niemand kwam kijken", 2, "ombudsdienst@wingene.example"),
    ],
)
async def test_the_answer_and_the_survey_reach_the_chat_and_the_visitor_s_score_is_kept(
    town: ChatTown, reply: str, score: int, answer: str
) -> None:
    town.clock.now = at("2026-11-16 11:00")
    visitor = await town.open_chat()
    await visitor.say(LAMP)
    await town.line(visitor)

    town.clock.now = at("2026-11-18 14:00")
    await town.set_status(FIRST, status="resolved", answer="De lamp is vanmorgen vervangen.")
    assert await town.line(visitor, "staff") == (
        "De lamp is vanmorgen vervangen.\n\n"
        "Uw melding 1750-000001 is behandeld. Is er nog iets? Stuur ons gerust een bericht."
    )
    await visitor.close()

    # A day later the question waits in the chat for the visitor.
    assert await town.later(at("2026-11-19 13:59")) == 0
    assert await town.later(at("2026-11-19 14:01")) == 1
    await town.send_due()
    [survey] = await town.outbox("survey")
    assert (survey["channel"], survey["state"]) == ("webchat", "sent")

    town.clock.now = at("2026-11-19 18:30")
    back = await town.open_chat(visitor.token)
    last = back.welcome["transcript"][-1]
    assert (last["from"], last["text"]) == (
        "system",
        "Hoe tevreden bent u over onze hulp bij 1750-000001? "
        "Antwoord met een cijfer van 1 (heel slecht) tot 5 (heel goed).",
    )
    assert (await back.say(reply))["reference"] == FIRST
    assert answer in await town.line(back)
    ticket = await town.ticket(FIRST)
    assert (ticket["survey"], ticket["satisfaction"], ticket["status"]) == (
        "answered",
        score,
        "resolved",
    )
    assert len(await town.rows(Ticket)) == 1


# 5. A compliment


def mail_text(raw: bytes) -> str:
    mail = message_from_bytes(raw, policy=default_policy)
    assert isinstance(mail, EmailMessage)
    body = mail.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


async def test_a_compliment_in_the_chat_is_thanked_closed_and_passed_to_the_department(
    start_town: StartTown,
) -> None:
    town = await start_town(praise=True)
    town.clock.now = at("2026-11-16 11:00")
    visitor = await town.open_chat()
    praise = "Een pluim voor de technische dienst: de straatlamp was op een dag hersteld!"
    assert (await visitor.say(praise))["reference"] == FIRST
    assert await town.line(visitor) == (
        "Bedankt voor uw compliment! We geven het door aan de collega's over wie het gaat."
    )

    ticket = await town.ticket(FIRST)
    assert (ticket["kind"], ticket["status"], ticket["department"]) == (
        "compliment",
        "closed",
        "technical-service",
    )
    assert ticket["deadlines"]["first_answer_due"] is None
    [forward] = await town.outbox("compliment_forward")
    assert (forward["channel"], forward["recipient"]) == (
        "email",
        "technische.dienst@wingene.example",
    )
    # The dispatcher sent it with the chat line: the department reads the visitor's words.
    [mail] = town.smtp.received
    assert mail.rcpt_tos == ["technische.dienst@wingene.example"]
    assert "op een dag hersteld" in mail_text(mail.raw)
    # Nothing is left to do: no deadline, no survey.
    assert await town.later(at("2026-12-31 10:00")) == 0
