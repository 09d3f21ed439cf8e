"""What the bot says by itself: the welcome with its kind buttons, and the prompt after a choice.

The citizen's app language picks Dutch, French or English; anything else gets Dutch.
"""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from connectors.telegram.options import WelcomeTexts
from ingest.model import KIND_CHOICE, Kind

LANGUAGES = ("nl", "fr", "en")

LABELS: dict[str, dict[Kind, str]] = {
    "nl": {
        Kind.REPORT: "Melding",
        Kind.QUESTION: "Vraag",
        Kind.COMPLAINT: "Klacht",
        Kind.SUGGESTION: "Suggestie",
        Kind.COMPLIMENT: "Compliment",
    },
    "fr": {
        Kind.REPORT: "Signalement",
        Kind.QUESTION: "Question",
        Kind.COMPLAINT: "Plainte",
        Kind.SUGGESTION: "Suggestion",
        Kind.COMPLIMENT: "Compliment",
    },
    "en": {
        Kind.REPORT: "Report",
        Kind.QUESTION: "Question",
        Kind.COMPLAINT: "Complaint",
        Kind.SUGGESTION: "Suggestion",
        Kind.COMPLIMENT: "Compliment",
    },
}

PROMPTS: dict[str, str] = {
    "nl": "{label}: schrijf nu uw bericht. Een foto, uw locatie of een spraakbericht mag ook.",
    "fr": "{label} : écrivez maintenant votre message. Photo, position ou message vocal bienvenus.",
    "en": "{label}: now write your message. A photo, your location or a voice note is welcome too.",
}

# Two buttons a row: the labels stay readable on a phone.
_ROWS = ((Kind.REPORT, Kind.QUESTION), (Kind.COMPLAINT, Kind.SUGGESTION), (Kind.COMPLIMENT,))


def language(code: str | None) -> str:
    return code if code in LANGUAGES else "nl"


def welcome(texts: WelcomeTexts, town: str, code: str | None) -> tuple[str, InlineKeyboardMarkup]:
    """The answer to ``/start``: the configured text and a button per kind."""
    lang = language(code)
    text = str(getattr(texts, lang)).replace("{town}", town)
    labels = LABELS[lang]
    keyboard = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(labels[kind], callback_data=f"{KIND_CHOICE}{kind.value}")
                for kind in row
            ]
            for row in _ROWS
        ]
    )
    return text, keyboard


def label(kind: Kind, code: str | None) -> str:
    return LABELS[language(code)][kind]


def prompt(kind: Kind, code: str | None) -> str:
    """What the citizen reads after choosing a kind."""
    return PROMPTS[language(code)].format(label=label(kind, code))
