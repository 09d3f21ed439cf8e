"""The acknowledgement a new ticket gets, written from the shipped templates and sample policies.

Messages go through the real intake pipeline (SQLite and PostgreSQL) with the town's sample
configuration; the outbox row is what the citizen will receive.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ingest.model import Channel, Kind
from ingest.pipeline import Intake, IntakePolicy
from meldpunt.app import acknowledgement
from meldpunt.config import LoadedConfig
from store.db import Database
from store.models import OutboxRow
from tests.conftest import Clock, rows
from tests.messages import inbound, sample_rules
from tests.service import sample_config

BRUSSELS = ZoneInfo("Europe/Brussels")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=BRUSSELS)


@pytest.fixture
def town(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> LoadedConfig:
    return sample_config(tmp_path, database_url, monkeypatch)


@pytest.fixture
async def intake(database: Database, clock: Clock, town: LoadedConfig) -> AsyncIterator[Intake]:
    rules = sample_rules()
    policy = IntakePolicy(reference_prefix="1750", acknowledge=acknowledgement(town))
    service = Intake(database.engine, lambda: rules, policy, clock)
    await service.start()
    yield service
    await service.stop()


async def acknowledgement_of(database: Database) -> dict[str, object]:
    [row] = await rows(database, OutboxRow)
    return dict(row)


async def test_a_web_form_report_is_acknowledged_by_e_mail_with_the_answer_day_and_a_copy(
    intake: Intake, database: Database
) -> None:
    # Friday morning, within office hours: 3 working days skip the weekend → Wednesday.
    await intake.submit(inbound(received_at=at("2026-11-27 10:00")))
    ack = await acknowledgement_of(database)
    assert ack["channel"] == "email"
    assert ack["subject"] == "We hebben uw bericht ontvangen [1750-000001]"
    body = str(ack["body"])
    assert body.startswith("Beste An Peeters,")
    assert "Uw nummer is 1750-000001." in body
    assert "U krijgt een antwoord ten laatste op woensdag 2 december." in body
    # The citizen's own words come back with the receipt of a form.
    assert "Dit schreef u:\nDe straatlamp in de Kerkstraat brandt niet." in body
    assert "gesloten" not in body


async def test_outside_office_hours_the_acknowledgement_says_when_the_office_opens(
    intake: Intake, database: Database
) -> None:
    # Christmas Eve is a closing day in the sample, Christmas a public holiday, 26 December a
    # yearly closing day, then the weekend: the office opens again on Monday 28 December.
    await intake.submit(
        inbound(channel=Channel.SMS, email=None, phone="+32470123456",
                received_at=at("2026-12-23 20:15"))
    )  # fmt: skip
    ack = await acknowledgement_of(database)
    assert ack["channel"] == "sms"
    body = str(ack["body"])
    assert "We zijn nu gesloten. We lezen het vanaf maandag 28 december om 08:30." in body
    assert "Dringend? Bel 112." in body
    assert len(body) <= 320  # two SMS segments at most
    assert "Dit schreef u" not in body  # no copy of an SMS by SMS


async def test_a_complaint_follows_the_complaint_procedure_in_the_citizens_language(
    intake: Intake, database: Database
) -> None:
    # 45 days from 27 September end on 11 November (a public holiday) → 12 November.
    await intake.submit(
        inbound("Niemand heeft mijn klacht beantwoord.", kind=Kind.COMPLAINT,
                language="fr", received_at=at("2026-09-27 10:00"))
    )  # fmt: skip
    ack = await acknowledgement_of(database)
    assert ack["subject"] == "Nous avons reçu votre plainte [1750-000001]"
    assert "au plus tard le jeudi 12 novembre." in str(ack["body"])


async def test_a_chat_gets_the_short_chat_form(intake: Intake, database: Database) -> None:
    await intake.submit(
        inbound(channel=Channel.TELEGRAM, email=None, chat="4242", language="en",
                received_at=at("2026-11-30 09:00"))
    )  # fmt: skip
    ack = await acknowledgement_of(database)
    assert ack["channel"] == "telegram"
    assert ack["body"] == (
        "Thank you, we received your message. Your reference is 1750-000001. "
        "You will get an answer by Thursday 3 December at the latest."
    )
