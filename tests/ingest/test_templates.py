"""The town's notice templates: every notice renders in every language and channel form."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from connectors.email.send import html_from_text
from ingest.model import Channel
from ingest.templates import LANGUAGES, Notice, TemplateProblem, Templates

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "templates"
BRUSSELS = ZoneInfo("Europe/Brussels")
VALUES = {
    "reference": "1750-000042",
    "name": None,
    "town": {"name": "Gemeente Wingene", "phone": "051 65 95 00", "website": "https://wingene.be"},
    "expected": datetime(2026, 12, 2, 16, 30, tzinfo=BRUSSELS),
    "opens": datetime(2026, 11, 30, 8, 30, tzinfo=BRUSSELS),
    "message": "Er ligt een put in de <b>Kerkstraat</b>.",
    "department": "Technische dienst",
    "reply": "De put is hersteld.",
    "survey_url": "https://meldpunt.example/survey/abc",
    "ombudsman": {"name": "de Vlaamse Ombudsdienst", "email": "", "phone": "1700", "url": ""},
    # What the notices to staff use besides the above.
    "subject": "Put in de Kerkstraat",
    "ticket_url": "https://meldpunt.example/tickets/1750-000042",
    "deadline": "resolution",
    "due": datetime(2026, 12, 4, 12, 0, tzinfo=BRUSSELS),
    "score": 2,
    "comment": None,
}


@pytest.fixture
def templates() -> Templates:
    return Templates(SHIPPED)


def test_the_shipped_templates_all_render(templates: Templates) -> None:
    assert templates.check(VALUES) == []


@pytest.mark.parametrize("language", LANGUAGES)
def test_each_channel_gets_its_own_form(templates: Templates, language: str) -> None:
    mail = templates.render(Notice.ACKNOWLEDGEMENT, language=language, channel=Channel.EMAIL,
                            values=VALUES)  # fmt: skip
    sms = templates.render(Notice.ACKNOWLEDGEMENT, language=language, channel=Channel.SMS,
                           values=VALUES)  # fmt: skip
    chat = templates.render(Notice.ACKNOWLEDGEMENT, language=language, channel=Channel.TELEGRAM,
                            values=VALUES)  # fmt: skip
    for rendered in (mail, sms, chat):
        assert "1750-000042" in rendered.text
    assert mail.subject and "1750-000042" in mail.subject
    assert "Kerkstraat" in mail.text  # the citizen's own words are quoted in the e-mail
    assert len(sms.text) <= 160 * 2, sms.text  # at most two SMS segments
    assert "\n\n" not in sms.text
    assert len(chat.text) < len(mail.text)


def test_the_answer_time_is_written_in_the_citizens_language(templates: Templates) -> None:
    def text(language: str) -> str:
        return templates.render(
            Notice.ACKNOWLEDGEMENT, language=language, channel=Channel.WEBCHAT, values=VALUES
        ).text

    assert "woensdag 2 december om 16:30" in text("nl")
    assert "mercredi 2 décembre à 16:30" in text("fr")
    assert "Wednesday 2 December at 16:30" in text("en")
    # A language the town has no texts in falls back to Dutch; a region code is ignored.
    assert text("de") == text("nl")
    assert text("fr-BE") == text("fr")


def test_html_escapes_what_the_citizen_wrote_and_links_urls(templates: Templates) -> None:
    # The e-mail channel makes the HTML part from the notice's text.
    mail = templates.render(Notice.SURVEY, language="nl", channel=Channel.EMAIL,
                            values=VALUES)  # fmt: skip
    survey = html_from_text(mail.text)
    assert '<a href="https://meldpunt.example/survey/abc"' in survey
    ack = templates.render(Notice.ACKNOWLEDGEMENT, language="nl", channel=Channel.EMAIL,
                           values=VALUES)  # fmt: skip
    body = html_from_text(ack.text)
    assert "&lt;b&gt;Kerkstraat&lt;/b&gt;" in body
    assert "<b>" not in body


def test_a_kind_has_its_own_text_where_the_town_wrote_one(templates: Templates) -> None:
    complaint = templates.render(Notice.ACKNOWLEDGEMENT, language="nl", channel=Channel.EMAIL,
                                 kind="complaint", values=VALUES)  # fmt: skip
    question = templates.render(Notice.ACKNOWLEDGEMENT, language="nl", channel=Channel.EMAIL,
                                kind="question", values=VALUES)  # fmt: skip
    assert complaint.subject == "We hebben uw klacht ontvangen [1750-000042]"
    assert question.subject == "We hebben uw bericht ontvangen [1750-000042]"


def test_a_typo_in_a_template_is_reported_with_its_file(tmp_path: Path) -> None:
    (tmp_path / "nl").mkdir()
    (tmp_path / "nl" / "acknowledgement.j2").write_text(
        "{% block text %}Uw nummer is {{ refrence }}.{% endblock %}", encoding="utf-8"
    )
    broken = Templates(tmp_path)
    with pytest.raises(TemplateProblem, match=r"nl/acknowledgement\.j2: 'refrence' is undefined"):
        broken.render(Notice.ACKNOWLEDGEMENT, language="nl", channel=Channel.SMS, values=VALUES)
    problems = broken.check(VALUES)
    assert any("refrence" in p for p in problems)
    assert any("no template for resolved" in p and "nl/resolved.j2" in p for p in problems)


def test_templates_cannot_reach_outside_the_sandbox(tmp_path: Path) -> None:
    (tmp_path / "nl").mkdir()
    (tmp_path / "nl" / "acknowledgement.j2").write_text(
        "{% block text %}{{ reference.__class__.__mro__ }}{% endblock %}", encoding="utf-8"
    )
    with pytest.raises(TemplateProblem, match=r"unsafe|__class__"):
        Templates(tmp_path).render(
            Notice.ACKNOWLEDGEMENT, language="nl", channel=Channel.SMS, values=VALUES
        )
