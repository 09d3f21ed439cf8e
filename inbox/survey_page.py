"""The satisfaction survey as a web page: the link in every survey message.

``GET /survey/{reference}/{token}`` shows five choices and a comment box; ``POST`` records the
answer exactly as a reply on the channel would (``ingest.followup.record_survey_answer``): the
thanks, or at a low score the ombudsman's details (on the page too) and a mail to the
department. The token is an HMAC of the reference with the service's secret key, so the link
answers for that ticket only, and a wrong or guessed link gets the same "not found" as a missing
ticket. The page is the one place in ``inbox/`` a citizen sees; it uses no cookie and no script.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import jinja2
import sqlalchemy as sa
from aiohttp import web

from ingest.followup import TICKETS, FollowUp, record_survey_answer
from store.db import Database
from store.models import Contact, table_of

CONTACTS = table_of(Contact)
MAX_COMMENT = 2000

_TEXTS: Mapping[str, Mapping[str, Any]] = {
    "nl": {
        "title": "Hoe tevreden bent u?",
        "intro": "Het gaat over uw melding {reference}. Uw antwoord helpt ons beter te werken.",
        "question": "Hoe tevreden bent u over onze hulp?",
        "labels": ["heel slecht", "slecht", "gaat wel", "goed", "heel goed"],
        "comment": "Wilt u nog iets zeggen? (mag leeg blijven)",
        "send": "Verstuur",
        "thanks": "Bedankt voor uw antwoord!",
        "ombudsman": "Bent u niet tevreden over hoe de gemeente u hielp? Dan kunt u terecht bij:",
        "pick": "Kies een cijfer van 1 tot 5.",
        "missing": "Deze link werkt niet. Kijk of u de hele link hebt overgenomen.",
    },
    "fr": {
        "title": "Êtes-vous satisfait ?",
        "intro": "Il s'agit de votre message {reference}. Votre avis nous aide à mieux faire.",
        "question": "Êtes-vous satisfait de notre aide ?",
        "labels": ["très mauvais", "mauvais", "moyen", "bien", "très bien"],
        "comment": "Voulez-vous ajouter quelque chose ? (facultatif)",
        "send": "Envoyer",
        "thanks": "Merci pour votre réponse !",
        "ombudsman": "Vous n'êtes pas satisfait de l'aide de la commune ? Adressez-vous à :",
        "pick": "Choisissez un chiffre de 1 à 5.",
        "missing": "Ce lien ne fonctionne pas. Vérifiez que vous avez copié tout le lien.",
    },
    "en": {
        "title": "How satisfied are you?",
        "intro": "This is about your message {reference}. Your answer helps us do better.",
        "question": "How satisfied are you with our help?",
        "labels": ["very bad", "bad", "okay", "good", "very good"],
        "comment": "Anything else you want to tell us? (optional)",
        "send": "Send",
        "thanks": "Thank you for your answer!",
        "ombudsman": "Not happy with how the town helped you? You can turn to:",
        "pick": "Choose a number from 1 to 5.",
        "missing": "This link does not work. Check that you copied the whole link.",
    },
}

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("inbox", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


class SurveyPage:
    """The handlers, bound to the service's database and follow-up rules."""

    def __init__(
        self,
        db: Database,
        followup: FollowUp,
        town: str,
        default_language: str,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.db = db
        self.followup = followup
        self.town = town
        self.default_language = default_language
        self.clock = clock or (lambda: datetime.now(UTC))

    def routes(self) -> list[web.RouteDef]:
        path = "/survey/{reference}/{token}"
        return [web.get(path, self.show), web.post(path, self.answer)]

    async def _ticket(self, request: web.Request) -> dict[str, Any] | None:
        reference = request.match_info["reference"]
        if not self.followup.check_survey_token(reference, request.match_info["token"]):
            return None
        async with self.db.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(TICKETS, CONTACTS.c.language.label("contact_language"))
                    .join(CONTACTS, CONTACTS.c.id == TICKETS.c.contact_id)
                    .where(TICKETS.c.reference == reference)
                )
            ).first()
        return dict(row._mapping) if row is not None else None

    def _language(self, request: web.Request, ticket: Mapping[str, Any] | None) -> str:
        """?lang= first, then the language the citizen wrote in, then the town's."""
        for wanted in (
            request.query.get("lang"),
            ticket["language"] if ticket else None,
            ticket["contact_language"] if ticket else None,
        ):
            if wanted in _TEXTS:
                return str(wanted)
        return self.default_language

    def _page(
        self,
        lang: str,
        status: int = 200,
        texts: Mapping[str, Any] | None = None,
        **values: Any,
    ) -> web.Response:
        html = _env.get_template("survey.html").render(
            lang=lang,
            t=texts or _TEXTS[lang],
            town=self.town,
            max_comment=MAX_COMMENT,
            **{"done": False, "error": None, "score": None, "comment": None, **values},
        )
        return web.Response(
            text=html,
            status=status,
            content_type="text/html",
            headers={
                "Cache-Control": "no-store",
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                "form-action 'self'; frame-ancestors 'none'",
                "Referrer-Policy": "no-referrer",
            },
        )

    def _missing(self, request: web.Request) -> web.Response:
        lang = self._language(request, None)
        text = _TEXTS[lang]
        return self._page(
            lang,
            404,
            {**text, "thanks": text["missing"]},
            done=True,
            ombudsman=None,
            reference="",
        )

    async def show(self, request: web.Request) -> web.Response:
        ticket = await self._ticket(request)
        if ticket is None:
            return self._missing(request)
        lang = self._language(request, ticket)
        return self._page(
            lang,
            reference=ticket["reference"],
            done=ticket["survey_state"] == "answered",
            ombudsman=None,
        )

    async def answer(self, request: web.Request) -> web.Response:
        ticket = await self._ticket(request)
        if ticket is None:
            return self._missing(request)
        lang = self._language(request, ticket)
        form = await request.post()
        raw_score = str(form.get("score", ""))
        comment = str(form.get("comment", "")).strip()[:MAX_COMMENT] or None
        if raw_score not in {"1", "2", "3", "4", "5"}:
            return self._page(
                lang,
                422,
                reference=ticket["reference"],
                error=_TEXTS[lang]["pick"],
                comment=comment,
                ombudsman=None,
            )
        score = int(raw_score)
        async with self.db.engine.begin() as conn:
            # Locked, so two quick clicks record one answer and send one thanks.
            current = (
                await conn.execute(
                    sa.select(TICKETS).where(TICKETS.c.id == ticket["id"]).with_for_update()
                )
            ).first()
            assert current is not None
            await record_survey_answer(
                conn, self.followup, dict(current._mapping), score, comment, self.clock(), via="web"
            )
        low = score <= self.followup.survey.threshold
        return self._page(
            lang,
            reference=ticket["reference"],
            done=True,
            ombudsman=self.followup.base_values()["ombudsman"] if low else None,
        )
