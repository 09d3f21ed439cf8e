"""The texts meldpunt sends citizens (and staff), written by the town as Jinja2 templates in its
config folder.

``config/templates/<language>/<notice>.j2`` holds one notice (acknowledgement, resolved, survey,
...) in one language; ``<notice>.<kind>.j2`` beside it replaces it for one kind (a complaint's
acknowledgement names the complaint procedure). A template fills blocks:

- ``subject``: the e-mail subject (the reference is added by the e-mail channel when missing);
- ``text``: the message itself, required (the e-mail channel adds simple HTML made from it);
- ``sms``: a shorter form for SMS (optional, else ``text``);
- ``chat``: a form for chat channels (WhatsApp, Messenger, Telegram, web chat; optional).

Templates run in Jinja2's sandbox with undefined names as errors, so a typo shows up when the
configuration is checked rather than in a citizen's inbox. Dates are written with the ``day``
and ``moment`` filters in the citizen's language ("maandag 30 november om 09:30").

A few notices (``STAFF_NOTICES``) go to staff instead, always by e-mail, in the town's language:
deadline warnings and escalations, forwarded compliments, low satisfaction scores.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from functools import lru_cache
from pathlib import Path
from typing import Any

from babel.dates import format_date, format_datetime
from jinja2 import (
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateError,
    TemplateNotFound,
    pass_context,
)
from jinja2.runtime import Context as JinjaContext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ingest.model import Channel

LANGUAGES = ("nl", "fr", "en")
_LOCALES = {"nl": "nl_BE", "fr": "fr_BE", "en": "en_GB"}
_DAY = {"nl": "EEEE d MMMM", "fr": "EEEE d MMMM", "en": "EEEE d MMMM"}
_MOMENT = {
    "nl": "EEEE d MMMM 'om' HH:mm",
    "fr": "EEEE d MMMM 'à' HH:mm",
    "en": "EEEE d MMMM 'at' HH:mm",
}
_CHAT = {Channel.WHATSAPP, Channel.MESSENGER, Channel.TELEGRAM, Channel.WEBCHAT}


class Notice(enum.StrEnum):
    """Every message meldpunt writes by itself: to a citizen, or (``STAFF_NOTICES``) to staff."""

    ACKNOWLEDGEMENT = "acknowledgement"
    ACKNOWLEDGEMENT_CLOSED = "acknowledgement_closed"  # arrived outside office hours
    REPLY = "reply"  # wraps a member of staff's answer
    RESOLVED = "resolved"
    SURVEY = "survey"
    SURVEY_UNCLEAR = "survey_unclear"
    SURVEY_THANKS = "survey_thanks"
    OMBUDSMAN = "ombudsman"
    COMPLIMENT_THANKS = "compliment_thanks"
    # These go to staff, always by e-mail, in the town's language.
    DEADLINE_WARNING = "deadline_warning"  # to the department or assignee, before the deadline
    DEADLINE_MISSED = "deadline_missed"  # to the department lead; the ticket is escalated
    COMPLIMENT_FORWARD = "compliment_forward"  # the citizen's compliment, to its department
    LOW_SCORE = "low_score"  # a low satisfaction score, to the department


# Written only as e-mail: they have no SMS or chat form to check.
STAFF_NOTICES = frozenset(
    {
        Notice.DEADLINE_WARNING,
        Notice.DEADLINE_MISSED,
        Notice.COMPLIMENT_FORWARD,
        Notice.LOW_SCORE,
    }
)
_FORMS = (Channel.EMAIL, Channel.SMS, Channel.WEBCHAT)


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str | None
    text: str


class TemplateProblem(Exception):
    """A template is missing or does not render; the message names the file and the reason."""


class Templates:
    """The town's notice templates, looked up by notice, kind and language."""

    def __init__(self, folder: Path, *, default_language: str = "nl") -> None:
        self.folder = folder
        self.default_language = default_language
        self._env = ImmutableSandboxedEnvironment(
            loader=FileSystemLoader(str(folder)),
            undefined=StrictUndefined,
            autoescape=False,
            lstrip_blocks=True,
            auto_reload=False,
        )
        self._found: dict[tuple[Notice, str, str | None], Template] = {}
        self._env.filters["day"] = _day
        self._env.filters["moment"] = _moment

    def language(self, wanted: str | None) -> str:
        """The language to write in: the citizen's when the town has texts in it."""
        code = (wanted or "").lower().replace("_", "-").split("-")[0]
        return code if code in LANGUAGES else self.default_language

    def render(
        self,
        notice: Notice,
        *,
        language: str | None,
        channel: Channel,
        kind: str | None = None,
        values: Mapping[str, Any],
    ) -> Rendered:
        """The notice in the form ``channel`` needs, in the citizen's language."""
        lang = self.language(language)
        template = self._template(notice, lang, kind)
        context = {
            **values,
            "language": lang,
            "channel": channel.value,
            "kind": kind,
        }
        form = "sms" if channel is Channel.SMS else "chat" if channel in _CHAT else None
        try:
            env_context = template.new_context(context)

            def block(name: str | None) -> str:
                # Only the blocks this channel needs are rendered: acknowledgements are on
                # intake's path, and a date written in words costs more than the rest.
                if name is None or name not in template.blocks:
                    return ""
                return _tidy("".join(template.blocks[name](env_context)))

            text = block(form) or block("text")
            subject = block("subject") or None
        except TemplateError as exc:
            raise TemplateProblem(f"{template.name}: {exc}") from exc
        if not text:
            raise TemplateProblem(f"{template.name}: the 'text' block is missing or empty")
        return Rendered(subject=subject, text=text)

    def has_kind_text(self, notice: Notice, kind: str, language: str | None) -> bool:
        """Whether the town wrote ``notice`` for ``kind`` in the citizen's language."""
        lang = self.language(language)
        try:
            template = self._template(notice, lang, kind)
        except TemplateProblem:
            return False
        return template.name == f"{lang}/{notice.value}.{kind}.j2"

    def check(self, sample: Mapping[str, Any]) -> list[str]:
        """Every problem with the templates, each as one line; empty when all render."""
        problems: list[str] = []
        for lang in LANGUAGES:
            for notice in Notice:
                for channel in (Channel.EMAIL,) if notice in STAFF_NOTICES else _FORMS:
                    try:
                        self.render(notice, language=lang, channel=channel, values=sample)
                    except TemplateProblem as exc:
                        problems.append(str(exc))
                        break
        return sorted(set(problems))

    def _template(self, notice: Notice, lang: str, kind: str | None) -> Template:
        """The template for the notice, looked up once: acknowledgements are on intake's path,
        and Jinja2 caches what it found but not what it did not (a kind without its own text)."""
        key = (notice, lang, kind)
        if (found := self._found.get(key)) is None:
            found = self._found[key] = self._select(notice, lang, kind)
        return found

    def _select(self, notice: Notice, lang: str, kind: str | None) -> Template:
        names = [f"{lang}/{notice.value}.j2"]
        if kind:
            names.insert(0, f"{lang}/{notice.value}.{kind}.j2")
        if lang != self.default_language:
            names.append(f"{self.default_language}/{notice.value}.j2")
        try:
            return self._env.select_template(names)
        except TemplateNotFound:
            raise TemplateProblem(
                f"no template for {notice.value} in {self.folder}: write {names[-1]}"
            ) from None
        except TemplateError as exc:
            raise TemplateProblem(f"{names[0]}: {exc}") from exc


@pass_context
def _day(context: JinjaContext, value: datetime | None) -> str:
    """``{{ expected | day }}``: "woensdag 2 december", in the notice's language."""
    if value is None:
        return ""
    return _written_day(value.date(), str(context["language"]))


@pass_context
def _moment(context: JinjaContext, value: datetime | None) -> str:
    """``{{ expected | moment }}``: "woensdag 2 december om 16:30", in the town's time.

    A moment at the very end of a day (a limit counted in days) is written as the day alone.
    """
    if value is None:
        return ""
    lang = str(context["language"])
    if value.hour == 23 and value.minute == 59:
        return _written_day(value.date(), lang)
    # The zone is part of the key: equal instants in two zones are written differently.
    return _written_moment(value, value.tzinfo, lang)


# Many notices name the same few days and hours: Babel's formatting is cached per value.
@lru_cache(maxsize=2048)
def _written_day(value: date, lang: str) -> str:
    return format_date(value, _DAY[lang], locale=_LOCALES[lang])


@lru_cache(maxsize=2048)
def _written_moment(value: datetime, zone: tzinfo | None, lang: str) -> str:
    return format_datetime(value, _MOMENT[lang], tzinfo=zone, locale=_LOCALES[lang])


def _tidy(text: str) -> str:
    """Template output without trailing spaces and with at most one blank line in a row."""
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines))


__all__ = [
    "LANGUAGES",
    "STAFF_NOTICES",
    "Notice",
    "Rendered",
    "TemplateProblem",
    "Templates",
]
