"""Reading Telegram updates into plain values, and splitting long answers; no I/O."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from telegram import Message, Update

from connectors.telegram.api import MAX_TEXT, split_text
from connectors.telegram.parse import (
    NotForUs,
    Unreadable,
    command_of,
    language_of,
    own_phone,
    read_message,
    read_update,
    seconds,
    update_type,
)
from ingest.model import Kind, Location, chosen_kind
from tests.connectors.telegram.conftest import CITIZEN, fixture


def message_of(name: str, **changes: Any) -> Message:
    data = fixture(name)
    data["message"].update(changes)
    update = Update.de_json(data, None)
    assert update.message is not None
    return update.message


@pytest.mark.parametrize(
    ("body", "external_id", "error"),
    [
        (b"\xff\xfe", "sha256-", "not JSON"),
        (b'"update"', "sha256-", "not a JSON object"),
        (b'{"message": {}}', "sha256-", "no numeric update_id"),
        (b'{"update_id": "7"}', "sha256-", "no numeric update_id"),
        (b'{"update_id": true}', "sha256-", "no numeric update_id"),
        (b'{"update_id": 7, "message": {"message_id": 1}}', "update:7", "does not follow"),
        (
            b'{"update_id": 7, "message": {"message_id": "1", "date": 0, '
            b'"chat": {"id": 1, "type": "private"}}}',
            "update:7",
            "without numeric ids",
        ),
    ],
)
def test_what_is_not_an_update_is_unreadable_with_a_name_for_the_journal(
    body: bytes, external_id: str, error: str
) -> None:
    with pytest.raises(Unreadable) as caught:
        read_update(body, None)
    assert caught.value.external_id.startswith(external_id)
    assert error in str(caught.value)


def test_an_update_is_known_by_its_one_content_field() -> None:
    for name, expected in (
        ("text", "message"),
        ("edited_message", "edited_message"),
        ("callback_query", "callback_query"),
        ("channel_post", "channel_post"),
    ):
        update = read_update(json.dumps(fixture(name)).encode(), None)
        assert update_type(update) == expected
    assert update_type(read_update(b'{"update_id": 9}', None)) is None


def test_a_text_message_reads_sender_time_and_words() -> None:
    message = read_message(message_of("text"))
    assert (message.chat_id, message.message_id, message.user_id) == (CITIZEN, 17, CITIZEN)
    assert message.external_id == f"{CITIZEN}:17"
    assert (message.display_name, message.language) == ("Marie Claes", "nl")
    assert message.sent_at == datetime(2026, 11, 16, 9, 12, 17, tzinfo=UTC)
    assert message.content.text.startswith("De straatlamp")
    assert (message.command, message.reply_to, message.edited_at) == (None, None, None)


@pytest.mark.parametrize(
    ("name", "text", "file", "location"),
    [
        (
            "photo",
            "Zwerfvuil aan de glasbol in de Stationsstraat.",
            ("AgACAgQAAxkBAAMSZ1x-large", "foto-18.jpg", "image/jpeg", 2064),
            None,
        ),
        (
            "document",
            "Bestand: schade fietspad.pdf",
            ("BQACAgQAAxkBAAMTZ1x-doc", "schade fietspad.pdf", "application/pdf", 1033),
            None,
        ),
        (
            "voice",
            "Spraakbericht van 0:42",
            ("AwACAgQAAxkBAAMUZ1x-voice", "spraakbericht-20.ogg", "audio/ogg", 1120),
            None,
        ),
        ("location", "Gedeelde locatie", None, Location(51.063102, 3.272913)),
        (
            "venue",
            "Locatie: Gemeentehuis – Oostmolenstraat 11, 8750 Wingene",
            None,
            Location(51.0631, 3.2729, "Gemeentehuis – Oostmolenstraat 11, 8750 Wingene"),
        ),
        ("contact_other", "Contactkaart gedeeld: Jan Peeters, +32 471 99 88 77", None, None),
    ],
)
def test_each_content_type_is_read_by_its_own_reader(
    name: str, text: str, file: tuple[str, str, str, int] | None, location: Location | None
) -> None:
    content = read_message(message_of(name)).content
    assert content.text == text
    found = content.file
    assert (found and (found.file_id, found.filename, found.content_type, found.size)) == file
    assert content.location == location
    assert content.phone is None


def test_an_animation_is_read_before_the_document_it_also_carries() -> None:
    animation = {
        "file_id": "CgACAgQ-gif",
        "file_unique_id": "AgAD-gif",
        "width": 320,
        "height": 240,
        "duration": 3,
        "file_name": "lamp.gif.mp4",
        "mime_type": "video/mp4",
        "file_size": 9000,
    }
    document = {k: animation[k] for k in ("file_id", "file_unique_id", "file_name", "mime_type")}
    content = read_message(message_of("document", animation=animation, document=document)).content
    assert content.text == "Animatie (GIF)"
    assert content.file is not None and content.file.filename == "lamp.gif.mp4"


def test_a_document_without_name_or_type_gets_both() -> None:
    document = {"file_id": "BQAC-x", "file_unique_id": "AgAD-x", "mime_type": "not a type"}
    content = read_message(message_of("document", document=document, caption="Zie bijlage")).content
    assert content.text == "Zie bijlage"
    assert content.file is not None
    assert (content.file.filename, content.file.content_type) == (
        "bestand.bin",
        "application/octet-stream",
    )


def test_the_citizens_own_number_becomes_a_phone_identity() -> None:
    content = read_message(message_of("contact_own")).content
    assert content.phone == "+32470123456"
    assert content.text == "Eigen telefoonnummer gedeeld: +32470123456"
    # The same card with another user's id is somebody else's number.
    other = message_of("contact_own")
    data = other.to_dict()
    data["contact"]["user_id"] = 987654
    assert read_message(Message.de_json(data, None)).content.phone is None


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("32470123456", "+32470123456"),
        ("+32470123456", "+32470123456"),
        ("+32 470 12 34 56", "+32470123456"),
        ("0470 12 34 56", "+32470123456"),
        ("31612345678", "+31612345678"),
        ("12", None),
        ("geen nummer", None),
    ],
)
def test_own_phone_numbers_come_without_plus_and_are_made_e164(raw: str, e164: str | None) -> None:
    assert own_phone(raw) == e164


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("group_message", "a message in a supergroup chat"),
        ("sticker", "a sticker message"),
    ],
)
def test_what_is_not_a_citizen_writing_privately_is_not_for_us(name: str, reason: str) -> None:
    with pytest.raises(NotForUs) as caught:
        read_message(message_of(name))
    assert caught.value.reason.startswith(reason)


def test_a_bot_is_not_a_citizen() -> None:
    data = fixture("text")
    data["message"]["from"]["is_bot"] = True
    message = Update.de_json(data, None).message
    assert message is not None
    with pytest.raises(NotForUs, match="not sent by a person"):
        read_message(message)


def test_an_edit_keeps_its_text_and_the_time_of_both_versions() -> None:
    update = Update.de_json(fixture("edited_message"), None)
    assert update.edited_message is not None
    edit = read_message(update.edited_message, edited=True)
    assert edit.external_id == f"{CITIZEN}:17:edit:1794820432"
    assert edit.sent_at == datetime(2026, 11, 16, 9, 12, 17, tzinfo=UTC)
    assert edit.edited_at == datetime(2026, 11, 16, 9, 13, 52, tzinfo=UTC)
    assert edit.content.text.endswith("Kerkstraat 14 brandt al een week niet.")


@pytest.mark.parametrize(
    ("text", "length", "command"),
    [
        ("/start", 6, "start"),
        ("/start@wingene_meldpunt_bot melding", 27, "start"),
        ("/HELP", 5, "help"),
        ("/start", None, None),  # no bot_command entity: just text
    ],
)
def test_a_command_is_read_from_its_entity(
    text: str, length: int | None, command: str | None
) -> None:
    entities = [{"offset": 0, "length": length, "type": "bot_command"}] if length else []
    message = message_of("start", text=text, entities=entities)
    assert command_of(message) == command


def test_kinds_languages_and_durations() -> None:
    assert chosen_kind("kind:complaint") is Kind.COMPLAINT
    assert chosen_kind("kind:lawaai") is None
    assert chosen_kind("complaint") is None
    assert chosen_kind(None) is None
    assert language_of("nl-BE") == "nl"
    assert language_of("FR") == "fr"
    assert language_of("") is None and language_of(None) is None
    assert seconds(timedelta(seconds=42.4)) == 42
    assert seconds(7) == 7 and seconds(None) == 0


def test_short_texts_are_not_split() -> None:
    assert split_text("  Dank u voor uw melding.  ") == ["Dank u voor uw melding."]
    assert split_text("   ") == []


def test_long_texts_are_split_at_paragraphs_lines_or_spaces() -> None:
    paragraph = "a" * 3000
    assert split_text(f"{paragraph}\n\n{paragraph}") == [paragraph, paragraph]
    lines = "\n".join(["regel"] * 1000)
    parts = split_text(lines)
    assert all(len(p) <= MAX_TEXT for p in parts)
    assert "\n".join(parts) == lines
    words = " ".join(["woord"] * 1500)
    parts = split_text(words)
    assert all(len(p) <= MAX_TEXT and not p.startswith(" ") for p in parts)
    assert " ".join(parts) == words


def test_a_text_without_spaces_is_cut_hard_and_emoji_count_twice() -> None:
    assert [len(p) for p in split_text("x" * 9000)] == [4096, 4096, 808]
    # Telegram counts UTF-16 code units: an emoji outside the BMP is two.
    parts = split_text("🚧" * 3000)
    assert [len(p) for p in parts] == [2048, 952]
    assert all(len(p.encode("utf-16-le")) // 2 <= MAX_TEXT for p in parts)
