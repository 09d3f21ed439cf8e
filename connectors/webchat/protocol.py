"""The web chat's wire format (docs/channels/webchat-protocol.md): tokens, frames, image types.

Pure functions and values only: the connector does the I/O. Frames from the widget are parsed
through a table keyed on their ``type``; anything that does not fit raises ``BadFrame`` with a
reason the widget gets back as a ``bad_frame`` error.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from ingest.chat import ChatLine
from ingest.model import Kind

LANGUAGES = ("nl", "fr", "en")
_VISITOR_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Domain separation: the secret key also signs other things (form tokens, Message-IDs).
_TOKEN_PURPOSE = b"webchat-visitor:"

ErrorCode = Literal[
    "too_long",
    "empty",
    "rate_limited",
    "invalid_email",
    "invalid_phone",
    "need_address",
    "unavailable",
    "bad_frame",
]

# What the visitor reads when the widget shows the server's words (it has its own, by code).
_ERRORS: dict[str, dict[str, str]] = {
    "too_long": {
        "nl": "Uw bericht is te lang (hoogstens {max_chars} tekens).",
        "fr": "Votre message est trop long ({max_chars} caractères au maximum).",
        "en": "Your message is too long (at most {max_chars} characters).",
    },
    "empty": {
        "nl": "Schrijf eerst een bericht.",
        "fr": "Écrivez d'abord un message.",
        "en": "Please write a message first.",
    },
    "rate_limited": {
        "nl": "U stuurde veel berichten na elkaar. Wacht even en probeer opnieuw.",
        "fr": "Vous avez envoyé beaucoup de messages. Attendez un instant et réessayez.",
        "en": "You sent many messages in a row. Please wait a moment and try again.",
    },
    "invalid_email": {
        "nl": "Dit e-mailadres klopt niet. Voorbeeld: naam@voorbeeld.be",
        "fr": "Cette adresse e-mail n'est pas valable. Exemple : nom@exemple.be",
        "en": "This e-mail address is not valid. Example: name@example.be",
    },
    "invalid_phone": {
        "nl": "Dit telefoonnummer klopt niet. Voorbeeld: 0470 12 34 56",
        "fr": "Ce numéro de téléphone n'est pas valable. Exemple : 0470 12 34 56",
        "en": "This phone number is not valid. Example: 0470 12 34 56",
    },
    "need_address": {
        "nl": "Geef een e-mailadres of een telefoonnummer, zodat we u kunnen antwoorden.",
        "fr": "Indiquez une adresse e-mail ou un numéro de téléphone pour notre réponse.",
        "en": "Give an e-mail address or a phone number so we can answer you.",
    },
    "unavailable": {
        "nl": "Er is een storing bij ons. Uw bericht is nog niet aangekomen; we proberen opnieuw.",
        "fr": "Nous avons un problème technique. Votre message n'est pas encore arrivé.",
        "en": "We have a technical problem. Your message has not arrived yet.",
    },
    "bad_frame": {
        "nl": "Dit bericht kwam niet goed aan.",
        "fr": "Ce message n'est pas bien arrivé.",
        "en": "This message did not arrive correctly.",
    },
}


def error_text(code: str, lang: str, **values: object) -> str:
    texts = _ERRORS[code]
    return texts.get(lang, texts["nl"]).format(**values)


# --- the visitor token ------------------------------------------------------------------------


def new_visitor_id() -> str:
    """A random, unguessable visitor id (22 URL-safe characters)."""
    return secrets.token_urlsafe(16)


def _signature(key: bytes, visitor_id: str) -> str:
    mac = hmac.new(key, _TOKEN_PURPOSE + visitor_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def visitor_token(key: bytes, visitor_id: str) -> str:
    """``<visitor_id>.<signature>``: what the widget keeps in localStorage."""
    return f"{visitor_id}.{_signature(key, visitor_id)}"


def visitor_of(key: bytes, token: object) -> str | None:
    """The visitor id of a token signed with ``key``; None for anything else."""
    if not isinstance(token, str) or len(token) > 200:
        return None
    visitor_id, dot, signature = token.partition(".")
    if not dot or not _VISITOR_ID.match(visitor_id):
        return None
    if not hmac.compare_digest(signature.encode(), _signature(key, visitor_id).encode()):
        return None
    return visitor_id


# --- frames from the widget -------------------------------------------------------------------


class BadFrame(ValueError):
    """A frame the protocol does not allow; ``client_id`` when the frame named one."""

    def __init__(self, reason: str, client_id: str | None = None) -> None:
        super().__init__(reason)
        self.client_id = client_id


@dataclass(frozen=True, slots=True)
class Hello:
    visitor: str | None
    lang: str


@dataclass(frozen=True, slots=True)
class ChatText:
    """A ``message`` frame: text the visitor wrote in the chat.

    ``kind`` is what the visitor said the message is; intake keeps it only when the message
    opens a ticket (a message that continues one cannot change what the ticket is about).
    """

    client_id: str
    text: str
    kind: Kind | None = None


@dataclass(frozen=True, slots=True)
class ContactDetails:
    email: str | None
    phone: str | None


@dataclass(frozen=True, slots=True)
class OfflineMessage:
    client_id: str
    text: str
    email: str | None
    phone: str | None
    kind: Kind | None = None


@dataclass(frozen=True, slots=True)
class Typing:
    pass


@dataclass(frozen=True, slots=True)
class Ping:
    pass


Frame = Hello | ChatText | ContactDetails | OfflineMessage | Typing | Ping


def client_id_of(value: object) -> str:
    if not isinstance(value, str) or not _CLIENT_ID.match(value):
        raise BadFrame("client_id must be 1 to 64 letters, digits, '-' or '_'")
    return value


def kind_of(value: object, client_id: str | None = None) -> Kind | None:
    """The kind a frame (or an upload) names: one of ``Kind``'s values, or None when absent.

    Raises:
        BadFrame: anything else, so a widget that sends a kind meldpunt does not know is told,
            instead of its message quietly becoming a report.
    """
    if value is None:
        return None
    if isinstance(value, str) and value in Kind._value2member_map_:
        return Kind(value)
    names = ", ".join(kind.value for kind in Kind)
    raise BadFrame(f"kind must be one of {names}, or null", client_id)


def _text(frame: Mapping[str, Any], client_id: str | None) -> str:
    text = frame.get("text")
    if not isinstance(text, str):
        raise BadFrame("text must be a string", client_id)
    return text


def _optional(frame: Mapping[str, Any], name: str, client_id: str | None) -> str | None:
    value = frame.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadFrame(f"{name} must be a string or null", client_id)
    return value.strip() or None


def _hello(frame: Mapping[str, Any]) -> Hello:
    visitor = frame.get("visitor")
    lang = frame.get("lang")
    return Hello(
        visitor if isinstance(visitor, str) else None,
        lang if isinstance(lang, str) and lang in LANGUAGES else LANGUAGES[0],
    )


def _message(frame: Mapping[str, Any]) -> ChatText:
    client_id = client_id_of(frame.get("client_id"))
    return ChatText(client_id, _text(frame, client_id), kind_of(frame.get("kind"), client_id))


def _contact(frame: Mapping[str, Any]) -> ContactDetails:
    return ContactDetails(_optional(frame, "email", None), _optional(frame, "phone", None))


def _offline(frame: Mapping[str, Any]) -> OfflineMessage:
    client_id = client_id_of(frame.get("client_id"))
    return OfflineMessage(
        client_id,
        _text(frame, client_id),
        _optional(frame, "email", client_id),
        _optional(frame, "phone", client_id),
        kind_of(frame.get("kind"), client_id),
    )


_PARSERS: dict[str, Callable[[Mapping[str, Any]], Frame]] = {
    "hello": _hello,
    "message": _message,
    "contact": _contact,
    "offline_message": _offline,
    "typing": lambda _: Typing(),
    "ping": lambda _: Ping(),
}


def parse_frame(text: str) -> Frame:
    """One JSON text frame from the widget.

    Raises:
        BadFrame: not JSON, not an object, an unknown type or a field of the wrong kind.
    """
    try:
        frame = json.loads(text)
    except ValueError:
        raise BadFrame("not JSON") from None
    if not isinstance(frame, dict):
        raise BadFrame("a frame is a JSON object")
    kind = frame.get("type")
    parser = _PARSERS.get(kind) if isinstance(kind, str) else None
    if parser is None:
        raise BadFrame(f"unknown frame type {kind!r}")
    return parser(frame)


# --- frames to the widget ---------------------------------------------------------------------


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def line_json(line: ChatLine, choices: Sequence[str] = ()) -> dict[str, Any]:
    """A line as the widget reads it; ``choices`` are answers it offers as buttons under it."""
    return {
        "id": line.id,
        "from": line.sender,
        "text": line.text,
        "at": iso(line.at),
        "attachments": [
            {"url": a.url, "name": a.name, "content_type": a.content_type} for a in line.attachments
        ],
        "client_id": line.client_id,
        "choices": [c for c in (choice.strip() for choice in choices) if c],
    }


def error_frame(
    code: ErrorCode, lang: str, client_id: str | None = None, **values: object
) -> dict[str, Any]:
    return {
        "type": "error",
        "client_id": client_id,
        "code": code,
        "message": error_text(code, lang, **values),
    }


# --- uploaded images --------------------------------------------------------------------------

# What the file's first bytes say it is: the client's Content-Type and file name are its word only.
_MAGIC: tuple[tuple[str, Callable[[bytes], bool]], ...] = (
    ("image/jpeg", lambda d: d.startswith(b"\xff\xd8\xff")),
    ("image/png", lambda d: d.startswith(b"\x89PNG\r\n\x1a\n")),
    ("image/gif", lambda d: d.startswith((b"GIF87a", b"GIF89a"))),
    ("image/webp", lambda d: d[:4] == b"RIFF" and d[8:12] == b"WEBP"),
)
EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png", "image/gif": ".gif", "image/webp": ".webp"}


def sniff_image(data: bytes) -> str | None:
    """The image type ``data`` is, by its magic bytes; None when it is none of the four."""
    return next((kind for kind, matches in _MAGIC if matches(data)), None)
