"""The notices meldpunt writes to staff: deadline warnings and escalations, forwarded
compliments and low satisfaction scores, by e-mail in the town's language."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ingest.acknowledge import sample_values
from ingest.model import Channel
from ingest.templates import LANGUAGES, STAFF_NOTICES, Notice, Rendered, Templates

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "templates"
BRUSSELS = ZoneInfo("Europe/Brussels")
TOWN = {
    "name": "Gemeente Wingene",
    "phone": "051 65 95 00",
    "email": "info@wingene.example",
    "website": "https://wingene.example",
}
VALUES: dict[str, Any] = {
    "reference": "1750-000042",
    "town": TOWN,
    "department": "Technische dienst",
    "subject": "Put in de Kerkstraat",
    "ticket_url": "https://meldpunt.example/tickets/1750-000042",
    "message": "Er ligt een diepe put in de Kerkstraat.",
    "name": "An Peeters",
    "deadline": "first_answer",
    "due": datetime(2026, 12, 2, 16, 30, tzinfo=BRUSSELS),
    "score": 1,
    "comment": "Niemand heeft me teruggebeld.",
}
DUE = {
    "nl": "woensdag 2 december om 16:30",
    "fr": "mercredi 2 décembre à 16:30",
    "en": "Wednesday 2 December at 16:30",
}
ESCALATED = {"nl": "geëscaleerd", "fr": "escaladé", "en": "escalated"}
SCORE = {"nl": "1 op 5", "fr": "1 sur 5", "en": "1 out of 5"}


@pytest.fixture(scope="module")
def templates() -> Templates:
    return Templates(SHIPPED)


def render(
    templates: Templates, notice: Notice, language: str, kind: str | None = None, **values: Any
) -> Rendered:
    return templates.render(
        notice,
        language=language,
        channel=Channel.EMAIL,
        kind=kind,
        values=VALUES | values,
    )


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("notice", sorted(STAFF_NOTICES))
def test_each_staff_notice_names_the_ticket_in_every_language(
    templates: Templates, notice: Notice, language: str
) -> None:
    mail = render(templates, notice, language, kind="complaint")
    assert mail.subject and "1750-000042" in mail.subject
    assert "1750-000042" in mail.text
    assert "https://meldpunt.example/tickets/1750-000042" in mail.text
    assert "Technische dienst" in mail.text
    # A text for staff, not the citizen's receipt: no "Dear An Peeters".
    assert not mail.text.startswith(("Beste An", "Bonjour An", "Dear An"))


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("notice", [Notice.DEADLINE_WARNING, Notice.DEADLINE_MISSED])
def test_a_deadline_notice_says_what_is_due_and_when(
    templates: Templates, notice: Notice, language: str
) -> None:
    first = render(templates, notice, language, deadline="first_answer")
    resolution = render(templates, notice, language, deadline="resolution")
    for mail in (first, resolution):
        assert DUE[language] in mail.text
        assert "Put in de Kerkstraat" in mail.text  # staff see what the ticket is about
    # The two deadlines read differently, in the subject too.
    assert first.text != resolution.text
    assert first.subject != resolution.subject
    escalated = ESCALATED[language] in first.text
    assert escalated is (notice is Notice.DEADLINE_MISSED)


def test_a_deadline_notice_shows_the_message_when_the_ticket_has_no_subject(
    templates: Templates,
) -> None:
    # Chat tickets have no subject line: the start of the citizen's message stands in for it.
    long = "Er ligt een diepe put in de Kerkstraat. " * 20
    mail = render(templates, Notice.DEADLINE_WARNING, "nl", subject="", message=long)
    assert "Bericht: Er ligt een diepe put in de Kerkstraat." in mail.text
    assert long.strip() not in mail.text  # shortened, not the whole text


def test_a_day_limit_is_written_as_its_day(templates: Templates) -> None:
    end_of_day = datetime(2026, 12, 2, 23, 59, 59, tzinfo=BRUSSELS)
    mail = render(templates, Notice.DEADLINE_WARNING, "nl", due=end_of_day)
    assert "ten laatste op woensdag 2 december." in mail.text


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_compliment_is_passed_on_with_the_citizens_words(
    templates: Templates, language: str
) -> None:
    words = "De mannen van de technische dienst waren heel vriendelijk!"
    mail = render(templates, Notice.COMPLIMENT_FORWARD, language, kind="compliment", message=words)
    assert words in mail.text
    assert "An Peeters" in mail.text


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_low_score_quotes_the_score_and_the_comment(templates: Templates, language: str) -> None:
    mail = render(templates, Notice.LOW_SCORE, language)
    assert "Niemand heeft me teruggebeld." in mail.text
    score = SCORE[language]
    assert score in mail.text
    assert mail.subject and score in mail.subject


def test_the_low_score_notice_says_the_citizen_got_the_ombudsmans_details(
    templates: Templates,
) -> None:
    assert "ombudsdienst" in render(templates, Notice.LOW_SCORE, "nl").text
    assert "médiation" in render(templates, Notice.LOW_SCORE, "fr").text
    assert "ombudsman" in render(templates, Notice.LOW_SCORE, "en").text


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("notice", sorted(STAFF_NOTICES))
def test_missing_values_leave_no_empty_lines_behind(
    templates: Templates, notice: Notice, language: str
) -> None:
    # An anonymous citizen, no comment, a chat ticket without subject, no public address.
    mail = render(
        templates,
        notice,
        language,
        name=None,
        comment=None,
        message=None,
        subject="",
        ticket_url="",
        department="",
    )
    assert "1750-000042" in mail.text
    assert "None" not in mail.text
    for line in mail.text.splitlines():
        assert not line.rstrip().endswith(":"), line  # no label left without its value


def test_a_notice_missing_in_one_language_falls_back_to_the_towns(tmp_path: Path) -> None:
    (tmp_path / "fr").mkdir()
    shutil.copy(SHIPPED / "fr" / "low_score.j2", tmp_path / "fr" / "low_score.j2")
    french_town = Templates(tmp_path, default_language="fr")
    english = french_town.render(
        Notice.LOW_SCORE, language="en", channel=Channel.EMAIL, values=VALUES
    )
    french = french_town.render(
        Notice.LOW_SCORE, language="fr", channel=Channel.EMAIL, values=VALUES
    )
    assert english == french
    assert "Niemand heeft me teruggebeld." in english.text


def test_the_shipped_templates_pass_the_check() -> None:
    templates = Templates(SHIPPED)
    assert templates.check(sample_values(TOWN, "Europe/Brussels")) == []


def test_the_check_renders_staff_notices_as_email_only() -> None:
    class Recording(Templates):
        def __init__(self, folder: Path) -> None:
            super().__init__(folder)
            self.forms: dict[Notice, set[Channel]] = {}

        def render(self, notice: Notice, **kwargs: Any) -> Rendered:
            self.forms.setdefault(notice, set()).add(kwargs["channel"])
            return super().render(notice, **kwargs)

    recording = Recording(SHIPPED)
    assert recording.check(sample_values(TOWN, "Europe/Brussels")) == []
    assert set(recording.forms) == set(Notice)
    for notice, forms in recording.forms.items():
        if notice in STAFF_NOTICES:
            assert forms == {Channel.EMAIL}, notice
        else:
            assert forms == {Channel.EMAIL, Channel.SMS, Channel.WEBCHAT}, notice


def test_a_typo_in_a_staff_notice_is_reported(tmp_path: Path) -> None:
    shutil.copytree(SHIPPED, tmp_path, dirs_exist_ok=True)
    (tmp_path / "en" / "deadline_missed.j2").write_text(
        "{% block text %}Ticket {{ refrence }} is late.{% endblock %}", encoding="utf-8"
    )
    problems = Templates(tmp_path).check(sample_values(TOWN, "Europe/Brussels"))
    assert problems == ["en/deadline_missed.j2: 'refrence' is undefined"]
