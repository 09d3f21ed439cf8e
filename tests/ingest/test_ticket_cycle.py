"""The follow-up cycle a citizen feels, driven through intake, staff actions and the timer worker.

Messages go through the real intake pipeline, staff act through ``inbox.tickets`` as the API
does, and ``FollowUpWorker`` runs the timers, all on a clock the test moves, with the town's
sample configuration and templates, on SQLite and PostgreSQL. What the citizen and staff would
receive is read from the outbox.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from inbox import tickets
from inbox.auth import Staff
from inbox.errors import UnprocessableError
from inbox.schemas import ReplyRequest, StatusRequest
from ingest.files import AttachmentStore
from ingest.followup import FollowUp, FollowUpWorker
from ingest.model import Channel, Kind, ThreadHints, TicketStatus
from ingest.pipeline import Intake, IntakePolicy
from meldpunt.app import acknowledgement, follow_up
from meldpunt.config import LoadedConfig
from store.db import Database
from store.models import Contact, OutboxRow, Ticket, TicketEvent, Timer
from store.users import create_user
from tests.conftest import Clock, rows
from tests.messages import inbound, sample_rules
from tests.service import sample_config

BRUSSELS = ZoneInfo("Europe/Brussels")
LAMP = "De straatlamp in de Kerkstraat brandt niet."
DEPARTMENTS = {"front-desk": "Onthaal", "technical-service": "Technische dienst"}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=BRUSSELS)


@pytest.fixture
def config(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> LoadedConfig:
    return sample_config(tmp_path, database_url, monkeypatch)


@pytest.fixture
def followup(config: LoadedConfig) -> FollowUp:
    return follow_up(config)


@pytest.fixture
async def intake(
    database: Database, clock: Clock, config: LoadedConfig, followup: FollowUp
) -> AsyncIterator[Intake]:
    rules = sample_rules()
    policy = IntakePolicy(
        reference_prefix="1750", acknowledge=acknowledgement(config), followup=followup
    )
    service = Intake(database.engine, lambda: rules, policy, clock)
    await service.start()
    yield service
    await service.stop()


@pytest.fixture
def worker(database: Database, followup: FollowUp, clock: Clock) -> FollowUpWorker:
    return FollowUpWorker(database.engine, followup, clock)


@pytest.fixture
async def staff(database: Database, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> Staff:
    # Staff act on the test's clock too.
    monkeypatch.setattr(tickets, "utcnow", clock)
    async with database.session() as session:
        user = await create_user(
            session, "els@wingene.example", "agent", ["technical-service"], None, "Els"
        )
        await session.flush()
        return Staff.from_user(user)


class Town:
    """The test's hands: write as a citizen, act as staff, let time pass."""

    def __init__(
        self,
        intake: Intake,
        database: Database,
        clock: Clock,
        worker: FollowUpWorker,
        staff: Staff,
        followup: FollowUp,
        tmp_path: Path,
    ) -> None:
        self.intake, self.database, self.clock = intake, database, clock
        self.worker, self.staff, self.followup = worker, staff, followup
        self.files = AttachmentStore(tmp_path / "files")

    async def write(self, text: str = LAMP, **kw: object) -> str:
        kw.setdefault("received_at", self.clock.now)
        result = await self.intake.submit(inbound(text, **kw))  # type: ignore[arg-type]
        assert result.ticket_reference is not None
        return result.ticket_reference

    async def answer_by_mail(self, reference: str, text: str) -> str:
        return await self.write(
            text,
            channel=Channel.EMAIL,
            subject=f"Re: Straatlamp kapot [{reference}]",
            hints=ThreadHints(reference=reference),
        )

    async def status(self, reference: str, status: TicketStatus, **kw: str) -> None:
        async with self.database.session() as session:
            await tickets.change_status(
                session,
                self.staff,
                DEPARTMENTS,
                reference,
                StatusRequest(status=status, **kw),
                followup=self.followup,
            )

    async def reply(self, reference: str, text: str, status: TicketStatus | None = None) -> None:
        async with self.database.session() as session:
            await tickets.reply(
                session,
                self.staff,
                reference,
                ReplyRequest(text=text, status=status),
                store=self.files,
                followup=self.followup,
            )

    async def wait_until(self, moment: datetime) -> int:
        """Move the clock and let the worker run what is due; returns how many timers ran."""
        self.clock.now = moment
        return await self.worker.run_once()

    async def ticket(self, reference: str) -> sa.RowMapping:
        [row] = await rows(self.database, Ticket, Ticket.__table__.c.reference == reference)  # type: ignore[attr-defined]
        return row

    async def sent(self, purpose: str | None = None) -> list[sa.RowMapping]:
        found = await rows(self.database, OutboxRow)
        return [r for r in found if purpose is None or r["purpose"] == purpose]

    async def events(self, reference: str) -> list[str]:
        ticket = await self.ticket(reference)
        found = await rows(
            self.database,
            TicketEvent,
            TicketEvent.__table__.c.ticket_id == ticket["id"],  # type: ignore[attr-defined]
        )
        return [e["type"] for e in found]

    async def timers(self, reference: str) -> dict[str, tuple[str, datetime]]:
        ticket = await self.ticket(reference)
        found = await rows(self.database, Timer, Timer.__table__.c.ticket_id == ticket["id"])  # type: ignore[attr-defined]
        return {t["kind"]: (t["state"], t["due_at"]) for t in found}


@pytest.fixture
def town(
    intake: Intake,
    database: Database,
    clock: Clock,
    worker: FollowUpWorker,
    staff: Staff,
    followup: FollowUp,
    tmp_path: Path,
) -> Town:
    return Town(intake, database, clock, worker, staff, followup, tmp_path)


# Deadlines


async def test_a_new_report_gets_its_deadlines_across_the_weekend_and_christmas(
    town: Town,
) -> None:
    town.clock.now = at("2026-11-27 10:00")  # a Friday
    ref = await town.write()
    ticket = await town.ticket(ref)
    assert ticket["deadline_policy"] == "standaard"
    # 3 working days after Friday: Monday, Tuesday, Wednesday; due by the end of Wednesday.
    assert ticket["first_answer_due"] == at("2026-12-02 23:59:59")
    # 30 calendar days end on Sunday 27 December: the limit runs on to the next working day,
    # Monday 28 December (26 December is a closing day of the town, 25th a public holiday).
    assert ticket["resolution_due"] == at("2026-12-28 23:59:59")
    timers = await town.timers(ref)
    assert timers == {
        "first_answer_warning": ("pending", at("2026-12-01 23:59:59")),
        "first_answer_due": ("pending", at("2026-12-02 23:59:59")),
        "resolution_warning": ("pending", at("2026-12-27 23:59:59")),
        "resolution_due": ("pending", at("2026-12-28 23:59:59")),
    }


async def test_staff_are_warned_before_and_the_lead_is_told_when_the_deadline_passes(
    town: Town,
) -> None:
    town.clock.now = at("2026-11-27 10:00")
    ref = await town.write()
    assert await town.wait_until(at("2026-12-01 20:00")) == 0

    assert await town.wait_until(at("2026-12-02 08:00")) == 1
    [warning] = await town.sent("deadline_warning")
    # Routed to the technical service; nobody is assigned, so the department's address.
    assert warning["recipient"] == "technische.dienst@wingene.example"
    assert ref in str(warning["subject"])
    assert "woensdag 2 december" in str(warning["body"])
    assert (await town.ticket(ref))["escalated_at"] is None

    assert await town.wait_until(at("2026-12-03 08:00")) == 1
    [missed] = await town.sent("deadline_missed")
    assert missed["recipient"] == "diensthoofd.td@wingene.example"
    ticket = await town.ticket(ref)
    assert ticket["escalated_at"] == at("2026-12-03 08:00")
    assert "deadline_missed" in await town.events(ref)
    # Nothing runs twice.
    assert await town.wait_until(at("2026-12-04 08:00")) == 0
    assert len(await town.sent("deadline_missed")) == 1


async def test_an_answer_in_time_stops_the_first_answer_warning(town: Town) -> None:
    town.clock.now = at("2026-11-27 10:00")
    ref = await town.write()
    town.clock.now = at("2026-11-30 09:00")
    await town.reply(ref, "We komen dinsdag kijken.")
    ticket = await town.ticket(ref)
    assert ticket["first_answered_at"] == at("2026-11-30 09:00")
    timers = await town.timers(ref)
    assert timers["first_answer_warning"][0] == "cancelled"
    assert timers["first_answer_due"][0] == "cancelled"
    assert timers["resolution_due"][0] == "pending"
    assert await town.wait_until(at("2026-12-04 08:00")) == 0
    assert await town.sent("deadline_warning") == []


async def test_the_clock_stands_still_while_the_ticket_waits_for_the_citizen(
    town: Town,
) -> None:
    town.clock.now = at("2026-11-27 10:00")
    ref = await town.write()
    town.clock.now = at("2026-11-30 10:00")
    await town.status(ref, TicketStatus.PENDING)
    ticket = await town.ticket(ref)
    assert ticket["paused_since"] == at("2026-11-30 10:00")
    assert {state for state, _ in (await town.timers(ref)).values()} == {"cancelled"}
    # Nothing is escalated while the town waits for the citizen, however long it takes.
    assert await town.wait_until(at("2026-12-02 09:00")) == 0

    town.clock.now = at("2026-12-02 10:00")
    await town.answer_by_mail(ref, "Het is de lamp voor huisnummer 12.")
    ticket = await town.ticket(ref)
    assert ticket["status"] == "open"
    assert ticket["paused_since"] is None
    # 10 hours of Monday were used; the 48 paused hours do not count; the other 62 hours run
    # from Wednesday 10:00: to the end of Friday 4 December.
    assert ticket["first_answer_due"] == at("2026-12-04 23:59:59")
    timers = await town.timers(ref)
    assert timers["first_answer_due"] == ("pending", at("2026-12-04 23:59:59"))
    assert await town.wait_until(at("2026-12-03 12:00")) == 0
    assert await town.wait_until(at("2026-12-04 12:00")) == 1
    assert len(await town.sent("deadline_warning")) == 1


# Resolving, the survey and the ombudsman


async def resolved_with_answer(town: Town) -> str:
    town.clock.now = at("2026-11-27 10:00")
    ref = await town.write()
    town.clock.now = at("2026-11-30 11:00")
    await town.reply(ref, "De lamp is vervangen.", TicketStatus.RESOLVED)
    return ref


async def test_resolving_with_an_answer_tells_the_citizen_it_is_done(town: Town) -> None:
    ref = await resolved_with_answer(town)
    [done] = await town.sent("reply")
    assert done["recipient"] == "burger@example.be"
    assert "De lamp is vervangen." in str(done["body"])
    assert ref in str(done["subject"])
    ticket = await town.ticket(ref)
    assert ticket["status"] == "resolved"
    timers = await town.timers(ref)
    assert timers["survey"] == ("pending", at("2026-12-01 11:00"))
    assert timers["close"] == ("pending", at("2026-12-14 11:00"))


async def test_resolving_without_an_answer_needs_a_reason(town: Town) -> None:
    town.clock.now = at("2026-11-27 10:00")
    ref = await town.write()
    with pytest.raises(UnprocessableError) as raised:
        await town.status(ref, TicketStatus.RESOLVED)
    assert raised.value.code == "reason_required"
    await town.status(ref, TicketStatus.RESOLVED, reason="dubbele melding")
    assert (await town.ticket(ref))["status"] == "resolved"
    # Nothing was sent to the citizen besides the acknowledgement.
    assert [r["purpose"] for r in await town.sent()] == ["acknowledgement"]


async def test_a_good_score_is_recorded_and_thanked_once(town: Town) -> None:
    ref = await resolved_with_answer(town)
    assert await town.wait_until(at("2026-12-01 11:05")) == 1
    [survey] = await town.sent("survey")
    assert survey["recipient"] == "burger@example.be"
    assert "1 tot 5" in str(survey["body"])
    assert f"/survey/{ref}/" in str(survey["body"])
    assert (await town.ticket(ref))["survey_state"] == "asked"

    town.clock.now = at("2026-12-01 18:00")
    await town.answer_by_mail(ref, "4 - vlot geholpen, bedankt")
    ticket = await town.ticket(ref)
    # The comment is the reply in the citizen's own words.
    assert (ticket["satisfaction"], ticket["satisfaction_comment"]) == (
        4,
        "4 - vlot geholpen, bedankt",
    )
    assert ticket["status"] == "resolved"  # an answer to the survey reopens nothing
    assert len(await town.sent("survey_thanks")) == 1
    assert await town.sent("ombudsman") == []
    # Only one survey per ticket, whatever happens next.
    town.clock.now = at("2026-12-02 09:00")
    await town.status(ref, TicketStatus.OPEN)
    await town.status(ref, TicketStatus.RESOLVED, reason="opnieuw afgehandeld")
    assert await town.wait_until(at("2026-12-05 09:00")) == 0
    assert len(await town.sent("survey")) == 1


@pytest.mark.parametrize("reply", ["1", "slecht", "twee", "😡 niemand kwam"])
async def test_a_low_score_sends_the_ombudsman_and_tells_the_department(
    town: Town, reply: str
) -> None:
    ref = await resolved_with_answer(town)
    await town.wait_until(at("2026-12-01 11:05"))
    town.clock.now = at("2026-12-02 09:00")
    await town.answer_by_mail(ref, reply)
    [ombudsman] = await town.sent("ombudsman")
    assert ombudsman["recipient"] == "burger@example.be"
    assert "ombudsdienst@wingene.example" in str(ombudsman["body"])
    [lead] = await town.sent("low_score")
    assert lead["recipient"] == "diensthoofd.td@wingene.example"
    ticket = await town.ticket(ref)
    assert ticket["satisfaction"] is not None and ticket["satisfaction"] <= 2
    assert ticket["escalated_at"] == at("2026-12-02 09:00")
    assert "ombudsman_referred" in await town.events(ref)


async def test_an_unclear_reply_is_asked_again_once(town: Town) -> None:
    ref = await resolved_with_answer(town)
    await town.wait_until(at("2026-12-01 11:05"))
    await town.answer_by_mail(ref, "bwa")
    assert len(await town.sent("survey_unclear")) == 1
    assert (await town.ticket(ref))["status"] == "resolved"
    await town.answer_by_mail(ref, "vijf")
    ticket = await town.ticket(ref)
    assert (ticket["survey_state"], ticket["satisfaction"]) == ("answered", 5)


async def test_stop_means_no_more_surveys_for_that_citizen(town: Town) -> None:
    ref = await resolved_with_answer(town)
    await town.wait_until(at("2026-12-01 11:05"))
    await town.answer_by_mail(ref, "STOP")
    [contact] = await rows(town.database, Contact)
    assert contact["no_surveys"] is True
    # The next matter of the same citizen is resolved, and no question follows.
    town.clock.now = at("2026-12-03 10:00")
    second = await town.write("Er ligt afval naast de glasbol.")
    await town.status(second, TicketStatus.RESOLVED, reason="opgeruimd")
    assert "survey" not in await town.timers(second)
    await town.wait_until(at("2026-12-10 10:00"))
    assert len(await town.sent("survey")) == 1


async def test_no_survey_for_a_ticket_staff_registered_themselves(town: Town) -> None:
    town.clock.now = at("2026-11-27 10:00")
    ref = await town.write(channel=Channel.DESK)
    await town.status(ref, TicketStatus.RESOLVED, reason="ter plaatse opgelost")
    assert "survey" not in await town.timers(ref)


# Reopening


async def test_a_message_soon_after_resolving_reopens_the_ticket(town: Town) -> None:
    ref = await resolved_with_answer(town)
    town.clock.now = at("2026-12-03 09:00")
    again = await town.answer_by_mail(ref, "De lamp brandt nog altijd niet. Kom eens kijken?")
    assert again == ref
    ticket = await town.ticket(ref)
    assert (ticket["status"], ticket["resolved_at"]) == ("open", None)
    # A new resolution deadline, counted from now; the survey and the closing are off.
    assert ticket["resolution_due"] == at("2027-01-04 23:59:59")
    timers = await town.timers(ref)
    assert timers["survey"][0] == "cancelled"
    assert timers["close"][0] == "cancelled"


async def test_after_the_reopen_window_a_message_opens_a_new_ticket_linked_to_the_old(
    town: Town,
) -> None:
    ref = await resolved_with_answer(town)
    await town.wait_until(at("2026-12-15 09:00"))
    assert (await town.ticket(ref))["status"] == "closed"
    town.clock.now = at("2026-12-20 09:00")
    new = await town.answer_by_mail(ref, "De lamp is weer stuk. Kunnen jullie nog eens komen?")
    assert new != ref
    old, ticket = await town.ticket(ref), await town.ticket(new)
    assert ticket["follows_id"] == old["id"]
    assert old["status"] == "closed"
    assert "follows" in await town.events(new)
    assert "followed_by" in await town.events(ref)


# Compliments and language


async def test_a_compliment_is_thanked_passed_on_and_closed(town: Town) -> None:
    town.clock.now = at("2026-11-27 10:00")
    ref = await town.write(
        "Dank aan de mannen van de technische dienst: de straatlamp was op een dag hersteld!",
        kind=Kind.COMPLIMENT,
    )
    ticket = await town.ticket(ref)
    assert ticket["status"] == "closed"
    assert ticket["first_answer_due"] is None
    [thanks] = await town.sent("acknowledgement")
    assert thanks["recipient"] == "burger@example.be"
    assert "Bedankt voor uw vriendelijke woorden" in str(thanks["body"])
    [forward] = await town.sent("compliment_forward")
    assert forward["recipient"] == "technische.dienst@wingene.example"
    assert "op een dag hersteld" in str(forward["body"])
    assert await town.timers(ref) == {}
    assert await town.wait_until(at("2026-12-31 10:00")) == 0


async def test_the_citizens_language_is_remembered_for_later_notices(town: Town) -> None:
    town.clock.now = at("2026-11-27 10:00")
    await town.write("Le lampadaire de la Kerkstraat ne fonctionne pas.", language="fr")
    [contact] = await rows(town.database, Contact)
    assert contact["language"] == "fr"
    # A later message without a language (an e-mail) is answered in French all the same.
    town.clock.now = at("2026-11-27 11:00")
    second = await town.write("Des déchets près de la bulle à verre.", channel=Channel.EMAIL)
    assert (await town.ticket(second))["language"] == "fr"
    acks = await town.sent("acknowledgement")
    assert str(acks[-1]["subject"]).startswith("Nous avons reçu votre message")
    assert "Merci pour votre message." in str(acks[-1]["body"])


async def test_timers_survive_a_restart_of_the_worker(
    town: Town, database: Database, followup: FollowUp, clock: Clock
) -> None:
    ref = await resolved_with_answer(town)
    # A new worker (a restarted process) finds the survey where the database keeps it.
    fresh = FollowUpWorker(database.engine, followup, clock)
    clock.now = at("2026-12-01 12:00")
    assert await fresh.run_once() == 1
    assert (await town.ticket(ref))["survey_state"] == "asked"


async def test_a_timer_due_later_is_left_alone(town: Town) -> None:
    await resolved_with_answer(town)
    assert await town.wait_until(at("2026-12-01 10:59")) == 0
    assert await town.sent("survey") == []
    assert await town.wait_until(at("2026-12-01 11:00") + timedelta(seconds=1)) == 1


async def test_a_failing_timer_is_tried_again_later_and_does_not_block_the_others(
    town: Town, monkeypatch: pytest.MonkeyPatch
) -> None:
    town.clock.now = at("2026-11-27 10:00")
    broken = await town.write()
    fine = await town.write("Er ligt afval naast de glasbol.", email="iemand@example.be")
    handle = FollowUpWorker._handle
    broken_id = (await town.ticket(broken))["id"]

    async def failing(self: FollowUpWorker, conn: Any, kind: Any, ticket: Any, *a: Any) -> str:
        if ticket["id"] == broken_id:
            raise RuntimeError("the mail template server is down")
        return await handle(self, conn, kind, ticket, *a)

    monkeypatch.setattr(FollowUpWorker, "_handle", failing)
    await town.wait_until(at("2026-12-02 08:00"))
    # The other ticket's warning went out; the broken one waits with its reason.
    assert [r["ticket_id"] for r in await town.sent("deadline_warning")] == [
        (await town.ticket(fine))["id"]
    ]
    state, due = (await town.timers(broken))["first_answer_warning"]
    assert state == "pending" and due == at("2026-12-02 08:01")
    [timer] = [
        t
        for t in await rows(town.database, Timer)
        if t["ticket_id"] == broken_id and t["kind"] == "first_answer_warning"
    ]
    assert timer["attempts"] == 1
    assert "the mail template server is down" in str(timer["outcome"])
    # Mended, it runs on the next pass after its delay.
    monkeypatch.setattr(FollowUpWorker, "_handle", handle)
    await town.wait_until(at("2026-12-02 08:02"))
    assert len(await town.sent("deadline_warning")) == 2
