"""The follow-up cycle as people see it by e-mail: the service, a real Dovecot and a real aiosmtpd.

A citizen's mail is appended to the town's mailbox; what the citizen and staff get back is what
aiosmtpd received; staff act through the REST API. The service runs on a clock the test moves
(intake, dispatcher, timers and the API read it), and the timers run when the test says so, as
the service's timer loop would once their time has come.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from inbox import tickets
from meldpunt.app import create_app
from tests.conftest import Clock
from tests.connectors.email.conftest import DovecotServer, Recorder, Start
from tests.connectors.email.test_connector import (
    CITIZEN,
    FAST_DISPATCH,
    TOWN_ADDRESS,
    Client,
    Town,
    mail_env,
    parsed,
)
from tests.service import sample_config, until

ClientFactory = Callable[..., Awaitable[Client]]

BRUSSELS = ZoneInfo("Europe/Brussels")
TECHNICAL_SERVICE = "technische.dienst@wingene.example"
TECHNICAL_LEAD = "diensthoofd.td@wingene.example"
LAMP = "Goedemiddag,\n\nDe straatlamp voor Kerkstraat 12 brandt al een week niet.\n\nAn Peeters"
FIRST = "1750-000001"
STORIES_BEGIN = datetime(2026, 11, 6, 7, 0, tzinfo=BRUSSELS)
# Timers run only when a test runs them: the service's own timer loop looks once at start-up
# (nothing is due then) and not again within a test.
TIMERS_BY_HAND = ("interval_seconds: 30 ", "interval_seconds: 3600 ")
# What a Dutch Gmail writes above the mail it quotes.
_DAYS = ("ma", "di", "wo", "do", "vr", "za", "zo")
_MONTHS = ("jan", "feb", "mrt", "apr", "mei", "jun", "jul", "aug", "sep", "okt", "nov", "dec")


def at(text: str) -> datetime:
    """A moment in the town's time."""
    return datetime.fromisoformat(text).replace(tzinfo=BRUSSELS)


def flat(text: str) -> str:
    """``text`` with every run of white space as one space: sentences survive line breaks."""
    return " ".join(text.split())


@dataclass(frozen=True)
class Letter:
    """One mail as it reached the SMTP server."""

    to: list[str]
    mail: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.mail["Subject"])

    @property
    def text(self) -> str:
        body = self.mail.get_body(("plain",))
        assert body is not None, "the mail has no plain-text part"
        return str(body.get_content())

    def says(self, sentence: str) -> bool:
        return flat(sentence) in flat(self.text)


@dataclass
class CycleTown(Town):
    """The running service on a moved clock, as the citizen (by mail) and staff (the API) use it."""

    clock: Clock

    def write(
        self,
        text: str,
        *,
        subject: str,
        in_reply_to: str | None = None,
        references: str | None = None,
    ) -> str:
        """The citizen's mail, sent now by the test's clock, arrives; returns its Message-ID."""
        msg = EmailMessage()
        msg["From"] = f"An Peeters <{CITIZEN}>"
        msg["To"] = f"Contactpunt 1750 <{TOWN_ADDRESS}>"
        msg["Subject"] = subject
        msg["Date"] = format_datetime(self.clock.now)
        msg["Message-ID"] = message_id = make_msgid(domain="mail.example.be")
        if in_reply_to:
            msg["In-Reply-To"] = in_reply_to
        if references:
            msg["References"] = references
        msg.set_content(text)
        self.receive(msg.as_bytes())
        return message_id

    def answer(self, letter: Letter, text: str) -> str:
        """The citizen answers ``letter`` in Gmail: ``text`` above the quoted mail."""
        sent = letter.mail["Date"].datetime.astimezone(BRUSSELS)
        attribution = (
            f"Op {_DAYS[sent.weekday()]} {sent.day} {_MONTHS[sent.month - 1]} {sent.year} "
            f"om {sent:%H:%M} schreef Contactpunt 1750 Wingene <{TOWN_ADDRESS}>:"
        )
        quote = "\n".join(f"> {line}".rstrip() for line in letter.text.splitlines())
        parent = str(letter.mail["Message-ID"])
        chain = str(letter.mail["References"] or "").split()
        return self.write(
            f"{text}\n\n{attribution}\n{quote}\n",
            subject=f"Re: {letter.subject}",
            in_reply_to=parent,
            references=" ".join(dict.fromkeys([*chain, parent])),
        )

    async def letters(self, count: int) -> list[Letter]:
        """Every mail sent so far, once there are at least ``count``."""
        await self.wait_for_mail(count)
        return [Letter(list(r.rcpt_tos), parsed(r.raw)) for r in self.smtp.received]

    async def no_more_letters_than(self, count: int) -> None:
        # Long enough for a wrong mail to be queued and sent by the fast dispatcher.
        await asyncio.sleep(0.5)
        sent = [parsed(r.raw)["Subject"] for r in self.smtp.received]
        assert len(sent) == count, f"expected {count} mails, got {sent}"

    async def run_timers(self, moment: datetime) -> int:
        """Let time pass to ``moment``; run what is due then, as the service's loop would."""
        return await self.let_time_pass(self.clock, moment)

    async def api(self, method: str, path: str, body: Any = None, **params: str) -> Any:
        status, answer = await self.staff_api(method, path, body, **params)
        assert status < 300, f"{method} {path}: {status} {answer}"
        return answer

    async def references(self, **filters: str) -> list[str]:
        page = await self.api("GET", "/tickets", **filters)
        return sorted(t["reference"] for t in page["items"])

    async def ticket_when(
        self, reference: str, what: str, check: Callable[[dict[str, Any]], bool]
    ) -> dict[str, Any]:
        """The ticket once ``check`` holds (intake reads the mailbox in its own time)."""
        found: dict[str, Any] = {}

        async def holds() -> bool:
            nonlocal found
            found = await self.ticket(reference)
            return check(found)

        await until(holds, f"{reference}: {what}")
        return found

    async def resolve(self, reference: str, answer: str) -> None:
        await self.api(
            "POST", f"/tickets/{reference}/status", {"status": "resolved", "answer": answer}
        )


def moment(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


@pytest.fixture
async def town(
    tmp_path: Path,
    database_url: str,
    aiohttp_client: ClientFactory,
    monkeypatch: pytest.MonkeyPatch,
    dovecot: DovecotServer,
    start_smtp: Start,
    clock: Clock,
) -> CycleTown:
    # Staff act on the test's clock too. It starts before every story and only moves forward:
    # the timer loop's pass at start-up reads it and may then wait for the database; had a test
    # moved it back meanwhile, that pass would run the story's timers at the old, later time.
    clock.now = STORIES_BEGIN
    monkeypatch.setattr(tickets, "utcnow", clock)
    account = dovecot.new_account()
    recorder = Recorder()
    mail_env(monkeypatch, dovecot, account)
    monkeypatch.setenv("SMTP_PORT", str(await start_smtp(recorder)))
    config = sample_config(
        tmp_path, database_url, monkeypatch, replace=dict([FAST_DISPATCH, TIMERS_BY_HAND])
    )
    client = await aiohttp_client(create_app(config, migrate=True, clock=clock))
    return CycleTown(client, dovecot, account, recorder, clock)


async def reported_on_friday(town: CycleTown) -> tuple[str, Letter]:
    """An Peeters mails about a street lamp on Friday 6 November 2026, in office hours."""
    town.clock.now = at("2026-11-06 10:00")
    first_id = town.write(LAMP, subject="Straatlamp kapot")
    [ack] = await town.letters(1)
    return first_id, ack


async def resolved_on_monday(town: CycleTown) -> tuple[str, Letter]:
    """The technical service answers and resolves on Monday 9 November 2026 at 11:00."""
    first_id, _ = await reported_on_friday(town)
    town.clock.now = at("2026-11-09 11:00")
    await town.resolve(FIRST, "We hebben de lamp vervangen. Ze brandt weer.")
    done = (await town.letters(2))[1]
    return first_id, done


# The acknowledgement


async def test_a_mail_on_friday_is_acknowledged_with_its_number_and_answer_day(
    town: CycleTown,
) -> None:
    first_id, ack = await reported_on_friday(town)

    assert ack.to == [CITIZEN]
    assert ack.mail["In-Reply-To"] == first_id
    assert f"[{FIRST}]" in ack.subject
    assert ack.says(f"Uw nummer is {FIRST}.")
    # Three working days after Friday: Monday 9, Tuesday 10 and, as 11 November (Armistice
    # Day) is a public holiday, Thursday 12 November.
    assert ack.says("U krijgt een antwoord ten laatste op donderdag 12 november.")
    assert ack.says(f"Dit schreef u: {LAMP}")
    assert "gesloten" not in ack.text

    ticket = await town.ticket(FIRST)
    assert ticket["status"] == "new"
    assert moment(ticket["deadlines"]["first_answer_due"]) == at("2026-11-12 23:59:59")
    assert ticket["deadlines"]["overdue"] is False


async def test_a_mail_out_of_hours_says_when_the_office_opens(town: CycleTown) -> None:
    # Wednesday 23 December, after the late opening hours (until 19:00). The office is closed
    # on the 24th (closing day), the 25th (Christmas), the 26th (closing day) and Sunday.
    town.clock.now = at("2026-12-23 20:00")
    town.write(LAMP, subject="Straatlamp kapot")

    [ack] = await town.letters(1)
    assert ack.to == [CITIZEN]
    assert f"[{FIRST}]" in ack.subject
    assert ack.says("Ons kantoor is nu gesloten.")
    assert ack.says("We lezen uw bericht vanaf maandag 28 december om 08:30.")
    assert ack.says("U krijgt een antwoord ten laatste op woensdag 30 december.")
    assert ack.says(f"Dit schreef u: {LAMP}")


# Deadlines


async def test_without_an_answer_staff_are_warned_and_then_the_lead_is_told(
    town: CycleTown,
) -> None:
    await reported_on_friday(town)

    # The evening before the warning is due (a day before the deadline) nothing is sent.
    await town.run_timers(at("2026-11-11 20:00"))
    await town.no_more_letters_than(1)

    await town.run_timers(at("2026-11-12 08:00"))
    warning = (await town.letters(2))[1]
    # Nobody is assigned: the technical service's own address hears it.
    assert warning.to == [TECHNICAL_SERVICE]
    assert warning.subject == f"Bijna te laat: eerste antwoord [{FIRST}]"
    assert warning.says(f"Ticket {FIRST} heeft nog geen eerste antwoord.")
    assert warning.says("Dat moet er zijn ten laatste op donderdag 12 november.")
    # A mail among staff: no part of the citizen's thread.
    assert warning.mail["In-Reply-To"] is None
    ticket = await town.ticket(FIRST)
    assert ticket["deadlines"]["overdue"] is False
    assert ticket["deadlines"]["escalated_at"] is None
    assert await town.references(overdue="true") == []

    await town.run_timers(at("2026-11-13 08:00"))
    missed = (await town.letters(3))[2]
    assert missed.to == [TECHNICAL_LEAD]
    assert missed.subject == f"Te laat: geen eerste antwoord [{FIRST}]"
    assert missed.says(
        f"Ticket {FIRST} moest ten laatste op donderdag 12 november een eerste antwoord krijgen."
    )
    assert missed.says("Het ticket is nu gemarkeerd als geëscaleerd.")
    ticket = await town.ticket(FIRST)
    assert ticket["deadlines"]["overdue"] is True
    assert moment(ticket["deadlines"]["escalated_at"]) == at("2026-11-13 08:00")
    assert await town.references(overdue="true") == [FIRST]
    assert await town.references(overdue="false") == []

    # Nothing is sent twice, and the citizen got nothing but the acknowledgement.
    await town.run_timers(at("2026-11-16 08:00"))
    await town.no_more_letters_than(3)
    assert [letter.to for letter in await town.letters(3)].count([CITIZEN]) == 1


# Resolving and the survey


async def test_resolved_then_asked_then_thanked_once(town: CycleTown) -> None:
    first_id, done = await resolved_on_monday(town)
    assert done.to == [CITIZEN]
    assert done.subject == f"Uw melding is behandeld [{FIRST}]"
    assert done.says("We hebben de lamp vervangen. Ze brandt weer.")
    assert done.says(f"Uw melding {FIRST} is nu behandeld.")
    assert done.mail["In-Reply-To"] == first_id
    ticket = await town.ticket(FIRST)
    assert ticket["status"] == "resolved"
    assert ticket["survey"] is None

    # One day later the question goes out.
    await town.run_timers(at("2026-11-10 10:59"))
    await town.no_more_letters_than(2)
    await town.run_timers(at("2026-11-10 11:05"))
    survey = (await town.letters(3))[2]
    assert survey.to == [CITIZEN]
    assert survey.subject == f"Hoe tevreden bent u? [{FIRST}]"
    assert survey.says("Hoe tevreden bent u over onze hulp?")
    assert survey.says("Antwoord met een cijfer van 1 tot 5.")
    assert (await town.ticket(FIRST))["survey"] == "asked"

    # The citizen answers the survey mail.
    town.clock.now = at("2026-11-10 18:00")
    town.answer(survey, "4 - vlot geholpen")
    thanks = (await town.letters(4))[3]
    assert thanks.to == [CITIZEN]
    assert thanks.subject == f"Bedankt voor uw antwoord [{FIRST}]"
    assert thanks.says("Bedankt voor uw antwoord.")
    ticket = await town.ticket(FIRST)
    assert ticket["satisfaction"] == 4
    assert ticket["survey"] == "answered"
    assert (ticket["satisfaction_comment"] or "").strip() == "4 - vlot geholpen"
    # An answer to the survey reopens nothing.
    assert ticket["status"] == "resolved"
    assert await town.references() == [FIRST]

    # Later timer runs ask nothing again.
    await town.run_timers(at("2026-11-12 09:00"))
    await town.run_timers(at("2026-11-24 09:00"))
    await town.no_more_letters_than(4)


async def test_a_low_score_brings_the_ombudsman_and_tells_the_lead(town: CycleTown) -> None:
    await resolved_on_monday(town)
    await town.run_timers(at("2026-11-10 11:05"))
    survey = (await town.letters(3))[2]

    town.clock.now = at("2026-11-11 09:30")
    town.answer(survey, "slecht")
    letters = await town.letters(5)
    by_recipient = {letter.to[0]: letter for letter in letters[3:]}
    assert sorted(by_recipient) == sorted([CITIZEN, TECHNICAL_LEAD])

    ombudsman = by_recipient[CITIZEN]
    assert f"[{FIRST}]" in ombudsman.subject
    assert ombudsman.says("Wat jammer dat u niet tevreden bent.")
    assert ombudsman.says("E-mail: ombudsdienst@wingene.example")
    assert ombudsman.says(f"Vermeld uw nummer {FIRST}.")

    lead = by_recipient[TECHNICAL_LEAD]
    assert lead.subject == f"Lage score: 2 op 5 [{FIRST}]"
    assert lead.says(f"gaf een lage score voor de hulp bij ticket {FIRST}: 2 op 5.")
    # The lead reads the citizen's own word, even when it was nothing but the score.
    assert lead.says("Het antwoord van An Peeters:\nslecht")

    ticket = await town.ticket(FIRST)
    assert ticket["satisfaction"] == 2
    assert moment(ticket["deadlines"]["escalated_at"]) == at("2026-11-11 09:30")
    assert ticket["status"] == "resolved"
    await town.no_more_letters_than(5)


# Writing again after the answer


async def test_a_mail_within_two_weeks_of_the_answer_reopens_the_ticket(
    town: CycleTown,
) -> None:
    _, done = await resolved_on_monday(town)

    town.clock.now = at("2026-11-12 09:00")
    town.answer(done, "De lamp brandt alweer niet. Kunnen jullie nog eens kijken?")
    ticket = await town.ticket_when(FIRST, "open again", lambda t: t["status"] == "open")
    assert ticket["resolved_at"] is None
    assert any(
        m["direction"] == "in" and "Kunnen jullie nog eens kijken?" in m["text"]
        for m in ticket["messages"]
    )
    assert await town.references() == [FIRST]
    # No new ticket, so no new acknowledgement.
    await town.no_more_letters_than(2)


async def test_a_mail_after_the_ticket_was_closed_opens_a_new_one_that_follows_it(
    town: CycleTown,
) -> None:
    _, done = await resolved_on_monday(town)
    await town.run_timers(at("2026-11-10 11:05"))  # the survey, left unanswered
    await town.letters(3)
    await town.run_timers(at("2026-11-23 10:59"))
    assert (await town.ticket(FIRST))["status"] == "resolved"
    # Fourteen days after resolving, the ticket is closed, without a mail.
    await town.run_timers(at("2026-11-23 11:05"))
    assert (await town.ticket(FIRST))["status"] == "closed"
    await town.no_more_letters_than(3)

    town.clock.now = at("2026-12-02 10:00")
    town.answer(done, "De lamp is opnieuw stuk. Kunnen jullie nog eens komen?")
    ack = (await town.letters(4))[3]
    assert ack.to == [CITIZEN]
    assert "[1750-000002]" in ack.subject
    assert ack.says("Uw nummer is 1750-000002.")
    assert await town.references() == [FIRST, "1750-000002"]
    new = await town.ticket("1750-000002")
    assert new["follows"] == FIRST
    assert new["status"] == "new"
    assert (await town.ticket(FIRST))["status"] == "closed"
