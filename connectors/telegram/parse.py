"""Telegram updates read into plain values; no I/O here.

Telegram posts one JSON ``Update`` per request with ``update_id`` and exactly one of
``message``, ``edited_message``, ``callback_query`` and some twenty other kinds; python-telegram-bot
builds the objects (``Update.de_json``) and this module reads them. A message has no type field:
its content is whichever of ``photo``, ``voice``, ``location``... is present, looked up here in a
table in order of precedence (a venue also carries a location, an animation also a document).
Quirks: the phone number of a shared contact often comes without its ``+``; a live location
sends an ``edited_message`` every few seconds; identifiers are integers up to 52 bits.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from telegram import Bot, Chat, Message, MessageEntity, Update
from telegram.helpers import effective_message_type

from ingest.files import media_type, safe_filename
from ingest.identity import InvalidIdentity, normalise_phone
from ingest.model import Location

JSON = "application/json"
# Commands that get the welcome instead of a ticket.
WELCOME_COMMANDS = frozenset({"start", "help"})


class Unreadable(ValueError):
    """A payload that is not a Telegram update; ``external_id`` names it in the journal."""

    def __init__(self, message: str, external_id: str) -> None:
        super().__init__(message)
        self.external_id = external_id


class NotForUs(Exception):
    """A real update that is not a citizen writing to the town (a group, a bot, a sticker)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class FileRef:
    """A file Telegram holds for us: fetched with ``getFile`` and its ``file_id``."""

    file_id: str
    filename: str
    content_type: str
    size: int | None


@dataclass(frozen=True, slots=True)
class Content:
    """What a message says, whatever its type; ``phone`` is the citizen's own number (E.164)."""

    text: str
    file: FileRef | None = None
    location: Location | None = None
    phone: str | None = None


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """A citizen's message in a private chat with the bot (or a new version of one)."""

    chat_id: int
    message_id: int
    user_id: int
    display_name: str | None
    language: str | None
    sent_at: datetime
    content: Content
    command: str | None = None
    reply_to: int | None = None
    # Set for an edit: when the citizen changed it, and when they first sent it.
    edited_at: datetime | None = None

    @property
    def external_id(self) -> str:
        base = message_key(self.chat_id, self.message_id)
        if self.edited_at is None:
            return base
        return f"{base}:edit:{int(self.edited_at.timestamp())}"


def message_key(chat_id: int, message_id: int) -> str:
    """How meldpunt names a Telegram message, inbound or outbound: message ids count per chat."""
    return f"{chat_id}:{message_id}"


def _fallback_id(body: bytes) -> str:
    return f"sha256-{hashlib.sha256(body).hexdigest()}"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_update(body: bytes, bot: Bot | None) -> Update:
    """The update in a webhook body.

    Raises:
        Unreadable: the body is not JSON, has no numeric ``update_id``, or does not follow the
            Bot API's shapes.
    """
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Unreadable(f"the body is not JSON: {exc}", _fallback_id(body)) from None
    if not isinstance(data, dict):
        raise Unreadable("the body is not a JSON object", _fallback_id(body))
    update_id = data.get("update_id")
    if not _is_int(update_id):
        raise Unreadable("the update has no numeric update_id", _fallback_id(body))
    external_id = f"update:{update_id}"
    try:
        update = Update.de_json(data, bot)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise Unreadable(
            f"update {update_id} does not follow the Bot API: {type(exc).__name__}: {exc}",
            external_id,
        ) from None
    message = update.message or update.edited_message
    if message is not None and not (
        _is_int(message.message_id)
        and _is_int(message.chat.id)
        and (message.from_user is None or _is_int(message.from_user.id))
    ):
        raise Unreadable(f"update {update_id}: a message without numeric ids", external_id)
    return update


def update_type(update: Update) -> str | None:
    """The update's one content field (``message``, ``callback_query``...), None when empty."""
    return next((key for key in update.to_dict() if key != "update_id"), None)


def language_of(code: str | None) -> str | None:
    """The primary language of an IETF tag as Telegram gives it: "nl-BE" → "nl"."""
    primary = (code or "").split("-")[0].strip().lower()
    return primary[:8] or None


def seconds(value: int | float | timedelta | None) -> int:
    """A duration as whole seconds, from either form python-telegram-bot may give."""
    if value is None:
        return 0
    if isinstance(value, timedelta):
        return round(value.total_seconds())
    return round(value)


def _clock(value: int | float | timedelta | None) -> str:
    total = seconds(value)
    return f"{total // 60}:{total % 60:02d}"


def own_phone(raw: str) -> str | None:
    """A number the citizen shared as their own, in E.164; None when it is not a phone number.

    Telegram sends the account's number as bare digits with the country code ("32470123456");
    a Belgian number written nationally starts with 0 instead.
    """
    number = raw.strip()
    if number.isdigit() and not number.startswith("0"):
        number = f"+{number}"
    try:
        return normalise_phone(number)
    except InvalidIdentity:
        return None


def _file(file_id: str, name: str | None, mime: str | None, size: int | None, stem: str) -> FileRef:
    content_type = media_type(mime or "") or (
        mimetypes.guess_type(name or "")[0] or "application/octet-stream"
    )
    filename = safe_filename(name or "")
    if not filename:
        filename = f"{stem}{mimetypes.guess_extension(content_type) or '.bin'}"
    return FileRef(file_id, filename, content_type, size)


def _with_caption(description: str, message: Message) -> str:
    caption = (message.caption or "").strip()
    return f"{description}\n{caption}" if caption else description


def _photo(message: Message, user_id: int) -> Content:
    # Telegram sends each photo in several sizes, smallest first; the largest is the original.
    largest = max(message.photo, key=lambda p: (p.width * p.height, p.file_size or 0))
    stem = f"foto-{message.message_id}"
    ref = FileRef(largest.file_id, f"{stem}.jpg", "image/jpeg", largest.file_size)
    return Content((message.caption or "").strip() or "Foto", file=ref)


def _document(message: Message, user_id: int) -> Content:
    doc = message.document
    assert doc is not None
    ref = _file(doc.file_id, doc.file_name, doc.mime_type, doc.file_size, "bestand")
    return Content((message.caption or "").strip() or f"Bestand: {ref.filename}", file=ref)


def _animation(message: Message, user_id: int) -> Content:
    anim = message.animation
    assert anim is not None
    ref = _file(anim.file_id, anim.file_name, anim.mime_type, anim.file_size, "animatie")
    return Content(_with_caption("Animatie (GIF)", message), file=ref)


def _video(message: Message, user_id: int) -> Content:
    video = message.video
    assert video is not None
    ref = _file(video.file_id, video.file_name, video.mime_type, video.file_size, "video")
    return Content(_with_caption(f"Video van {_clock(video.duration)}", message), file=ref)


def _video_note(message: Message, user_id: int) -> Content:
    note = message.video_note
    assert note is not None
    ref = FileRef(
        note.file_id, f"videobericht-{message.message_id}.mp4", "video/mp4", note.file_size
    )
    return Content(f"Videobericht van {_clock(note.duration)}", file=ref)


def _voice(message: Message, user_id: int) -> Content:
    voice = message.voice
    assert voice is not None
    content_type = media_type(voice.mime_type or "") or "audio/ogg"
    extension = ".ogg" if content_type == "audio/ogg" else mimetypes.guess_extension(content_type)
    ref = FileRef(
        voice.file_id,
        f"spraakbericht-{message.message_id}{extension or '.bin'}",
        content_type,
        voice.file_size,
    )
    return Content(_with_caption(f"Spraakbericht van {_clock(voice.duration)}", message), file=ref)


def _audio(message: Message, user_id: int) -> Content:
    audio = message.audio
    assert audio is not None
    ref = _file(audio.file_id, audio.file_name, audio.mime_type, audio.file_size, "audio")
    return Content(_with_caption(f"Audiobestand: {ref.filename}", message), file=ref)


def _venue(message: Message, user_id: int) -> Content:
    venue = message.venue
    assert venue is not None
    address = " – ".join(p for p in (venue.title, venue.address) if p) or None
    location = Location(venue.location.latitude, venue.location.longitude, address)
    return Content(f"Locatie: {address}" if address else "Gedeelde locatie", location=location)


def _location(message: Message, user_id: int) -> Content:
    where = message.location
    assert where is not None
    return Content("Gedeelde locatie", location=Location(where.latitude, where.longitude))


def _contact(message: Message, user_id: int) -> Content:
    card = message.contact
    assert card is not None
    name = " ".join(p for p in (card.first_name, card.last_name) if p)
    if card.user_id == user_id:
        phone = own_phone(card.phone_number)
        if phone is not None:
            return Content(f"Eigen telefoonnummer gedeeld: {phone}", phone=phone)
        return Content(f"Eigen telefoonnummer gedeeld, maar onleesbaar: {card.phone_number}")
    # Somebody else's card says nothing about who is writing: it is only text.
    return Content(f"Contactkaart gedeeld: {name}, {card.phone_number}")


def _text(message: Message, user_id: int) -> Content:
    return Content(message.text or "")


# Checked in this order; the first field present decides.
CONTENT: tuple[tuple[str, Callable[[Message, int], Content]], ...] = (
    ("animation", _animation),
    ("photo", _photo),
    ("video_note", _video_note),
    ("video", _video),
    ("voice", _voice),
    ("audio", _audio),
    ("document", _document),
    ("venue", _venue),
    ("location", _location),
    ("contact", _contact),
    ("text", _text),
)


def read_content(message: Message, user_id: int) -> Content:
    """What the message says.

    Raises:
        NotForUs: a sticker, a poll, a service message... nothing a town can read.
    """
    for field, reader in CONTENT:
        if message[field]:
            return reader(message, user_id)
    what = effective_message_type(message) or "an empty"
    raise NotForUs(f"a {what} message: nothing meldpunt can turn into a ticket")


def command_of(message: Message) -> str | None:
    """The bot command the message starts with ("/start@wingene_bot x" → "start")."""
    text = message.text or ""
    for entity in message.entities:
        if entity.type == MessageEntity.BOT_COMMAND and entity.offset == 0:
            return text[1 : entity.length].split("@")[0].lower() or None
    return None


def _aware(value: datetime | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def read_message(message: Message, *, edited: bool = False) -> ChatMessage:
    """A citizen's message (or its new version when ``edited``).

    Raises:
        NotForUs: not a person writing in a private chat, or nothing readable in it.
    """
    chat = message.chat
    if chat.type != Chat.PRIVATE:
        raise NotForUs(f"a message in a {chat.type} chat: meldpunt answers private chats only")
    user = message.from_user
    if user is None or user.is_bot:
        raise NotForUs("not sent by a person")
    if edited and (message.location is not None or message.venue is not None):
        # A live location is an edit every few seconds; its first message is already in.
        raise NotForUs("a live location moved: the location was taken from its first message")
    content = read_content(message, user.id)
    if edited:
        # Only the text can change; the file came with the original message.
        content = Content(content.text)
    reply = message.reply_to_message
    return ChatMessage(
        chat_id=chat.id,
        message_id=message.message_id,
        user_id=user.id,
        display_name=user.full_name.strip() or None,
        language=language_of(user.language_code),
        sent_at=_aware(message.date),
        content=content,
        command=None if edited else command_of(message),
        reply_to=reply.message_id if reply is not None else None,
        edited_at=_aware(message.edit_date) if edited else None,
    )
