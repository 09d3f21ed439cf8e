"""The inbox's words in Dutch (first), French and English; a missing word falls back to Dutch."""

from __future__ import annotations

import functools
from collections.abc import Mapping

LANGUAGES = ("nl", "fr", "en")

TEXTS: Mapping[str, Mapping[str, str]] = {
    "nl": {
        "inbox": "Inbox",
        "sign_in": "Aanmelden",
        "email": "E-mailadres",
        "password": "Wachtwoord",
        "wrong_login": "Het e-mailadres of het wachtwoord klopt niet.",
        "locked": "Te veel mislukte pogingen. Probeer opnieuw na {time}.",
        "sign_out": "Afmelden",
        "signed_out": "U bent afgemeld.",
        "change_password": "Wachtwoord wijzigen",
        "current_password": "Huidig wachtwoord",
        "new_password": "Nieuw wachtwoord (minstens 12 tekens)",
        "repeat_password": "Nieuw wachtwoord herhalen",
        "save": "Opslaan",
        "password_changed": "Uw wachtwoord is gewijzigd. Andere sessies zijn afgemeld.",
        "password_wrong": "Het huidige wachtwoord klopt niet.",
        "password_short": "Het nieuwe wachtwoord moet minstens 12 tekens hebben.",
        "password_mismatch": "De twee nieuwe wachtwoorden zijn niet gelijk.",
        "expired_form": "Dit formulier was verlopen. Probeer het opnieuw.",
        "skip": "Naar de inhoud",
        "tickets": "Tickets",
        "reference": "Nummer",
        "subject": "Onderwerp",
        "status": "Status",
        "kind": "Soort",
        "channel": "Kanaal",
        "department": "Dienst",
        "citizen": "Burger",
        "created": "Binnen",
        "due": "Antwoord tegen",
        "overdue": "te laat",
        "no_tickets": "Geen tickets.",
        "next_page": "Volgende pagina",
        "language": "Taal",
        "search": "Zoeken in onderwerp",
        "all": "alle",
        "only_overdue": "Alleen te laat",
        "filter": "Toon",
        "conversation": "Gesprek",
        "history": "Geschiedenis",
        "follows": "Vervolg op",
        "satisfaction": "Tevredenheid",
        "direction_in": "Burger",
        "direction_out": "Antwoord",
        "direction_note": "Interne notitie",
    },
    "fr": {
        "inbox": "Boîte de réception",
        "sign_in": "Se connecter",
        "email": "Adresse e-mail",
        "password": "Mot de passe",
        "wrong_login": "L'adresse e-mail ou le mot de passe est incorrect.",
        "locked": "Trop d'essais manqués. Réessayez après {time}.",
        "sign_out": "Se déconnecter",
        "signed_out": "Vous êtes déconnecté.",
        "change_password": "Changer le mot de passe",
        "current_password": "Mot de passe actuel",
        "new_password": "Nouveau mot de passe (au moins 12 caractères)",
        "repeat_password": "Répéter le nouveau mot de passe",
        "save": "Enregistrer",
        "password_changed": "Votre mot de passe est changé. Les autres sessions sont fermées.",
        "password_wrong": "Le mot de passe actuel est incorrect.",
        "password_short": "Le nouveau mot de passe doit avoir au moins 12 caractères.",
        "password_mismatch": "Les deux nouveaux mots de passe ne sont pas identiques.",
        "expired_form": "Ce formulaire avait expiré. Réessayez.",
        "skip": "Aller au contenu",
        "tickets": "Tickets",
        "reference": "Numéro",
        "subject": "Objet",
        "status": "Statut",
        "kind": "Type",
        "channel": "Canal",
        "department": "Service",
        "citizen": "Citoyen",
        "created": "Reçu",
        "due": "Réponse pour",
        "overdue": "en retard",
        "no_tickets": "Aucun ticket.",
        "next_page": "Page suivante",
        "language": "Langue",
        "search": "Chercher dans l'objet",
        "all": "tous",
        "only_overdue": "Seulement en retard",
        "filter": "Afficher",
        "conversation": "Conversation",
        "history": "Historique",
        "follows": "Suite de",
        "satisfaction": "Satisfaction",
        "direction_in": "Citoyen",
        "direction_out": "Réponse",
        "direction_note": "Note interne",
    },
    "en": {
        "inbox": "Inbox",
        "sign_in": "Sign in",
        "email": "E-mail address",
        "password": "Password",
        "wrong_login": "The e-mail address or the password is wrong.",
        "locked": "Too many failed attempts. Try again after {time}.",
        "sign_out": "Sign out",
        "signed_out": "You are signed out.",
        "change_password": "Change password",
        "current_password": "Current password",
        "new_password": "New password (at least 12 characters)",
        "repeat_password": "Repeat the new password",
        "save": "Save",
        "password_changed": "Your password is changed. Other sessions are signed out.",
        "password_wrong": "The current password is wrong.",
        "password_short": "The new password must have at least 12 characters.",
        "password_mismatch": "The two new passwords are not the same.",
        "expired_form": "This form had expired. Please try again.",
        "skip": "Skip to content",
        "tickets": "Tickets",
        "reference": "Reference",
        "subject": "Subject",
        "status": "Status",
        "kind": "Kind",
        "channel": "Channel",
        "department": "Department",
        "citizen": "Citizen",
        "created": "Received",
        "due": "Answer by",
        "overdue": "overdue",
        "no_tickets": "No tickets.",
        "next_page": "Next page",
        "language": "Language",
        "search": "Search in subject",
        "all": "all",
        "only_overdue": "Only overdue",
        "filter": "Show",
        "conversation": "Conversation",
        "history": "History",
        "follows": "Follows",
        "satisfaction": "Satisfaction",
        "direction_in": "Citizen",
        "direction_out": "Answer",
        "direction_note": "Internal note",
    },
}


# Names of statuses, kinds and channels, by language.
LABELS: Mapping[str, Mapping[str, str]] = {
    "nl": {
        "new": "nieuw", "open": "open", "pending": "wacht op burger", "resolved": "afgehandeld",
        "closed": "gesloten", "report": "melding", "question": "vraag",
        "suggestion": "suggestie", "complaint": "klacht", "compliment": "compliment",
        "email": "e-mail", "sms": "sms", "whatsapp": "WhatsApp", "voice": "telefoon",
        "messenger": "Messenger", "telegram": "Telegram", "webchat": "webchat",
        "webform": "webformulier", "app": "app", "desk": "loket",
    },
    "fr": {
        "new": "nouveau", "open": "ouvert", "pending": "attend le citoyen", "resolved": "traité",
        "closed": "fermé", "report": "signalement", "question": "question",
        "suggestion": "suggestion", "complaint": "plainte", "compliment": "compliment",
        "email": "e-mail", "sms": "SMS", "whatsapp": "WhatsApp", "voice": "téléphone",
        "messenger": "Messenger", "telegram": "Telegram", "webchat": "chat",
        "webform": "formulaire", "app": "app", "desk": "guichet",
    },
    "en": {
        "new": "new", "open": "open", "pending": "waiting for citizen", "resolved": "resolved",
        "closed": "closed", "report": "report", "question": "question",
        "suggestion": "suggestion", "complaint": "complaint", "compliment": "compliment",
        "email": "e-mail", "sms": "SMS", "whatsapp": "WhatsApp", "voice": "phone",
        "messenger": "Messenger", "telegram": "Telegram", "webchat": "web chat",
        "webform": "web form", "app": "app", "desk": "desk",
    },
}  # fmt: skip


def label(language: str, value: str) -> str:
    """The name of a status, kind or channel in ``language``; the value itself if unknown."""
    return LABELS.get(language, LABELS["nl"]).get(value, value)


def _parts() -> list[Mapping[str, Mapping[str, str]]]:
    from inbox.web.words import actions, conversation, register, replybox, views

    return [TEXTS, *(m.WORDS for m in (conversation, replybox, actions, register, views))]


@functools.cache
def texts(language: str) -> dict[str, str]:
    """The words of ``language``, Dutch where a word is missing (each part of the inbox keeps its
    own words in ``inbox.web.words``)."""
    merged: dict[str, str] = {}
    for words in _parts():
        merged.update(words["nl"])
    for words in _parts():
        merged.update(words.get(language, {}))
    return merged
