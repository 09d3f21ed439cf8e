"""Reading Messenger webhooks: one reader per event type, each event with a payload of its own."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from connectors.messenger.parse import (
    Delivered,
    Echo,
    Edited,
    Ignored,
    Incoming,
    Media,
    NotAWebhook,
    Read,
    Unreadable,
    event_type,
    parse_webhook,
)
from ingest.model import Kind, Location, chosen_kind
from tests.connectors.messenger.conftest import PSID, fixture

AT = 1794822000377


def body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


def one(payload: dict[str, Any]) -> Any:
    [event] = parse_webhook(body(payload))
    return event


def webhook(*events: dict[str, Any], key: str = "messaging") -> dict[str, Any]:
    return {
        "object": "page",
        "entry": [{"id": "104857600000001", "time": AT, key: list(events)}],
    }


def event(**fields: Any) -> dict[str, Any]:
    return {
        "sender": {"id": PSID},
        "recipient": {"id": "104857600000001"},
        "timestamp": AT,
        **fields,
    }


def test_a_text_message_keeps_its_id_sender_time_and_the_whole_body() -> None:
    payload = fixture("text", at=AT + 100)
    found = one(payload)
    assert isinstance(found, Incoming)
    assert found.external_id.startswith("m_Wq3kz8")
    assert (found.psid, found.kind, found.media) == (PSID, None, ())
    assert found.text == "Er ligt al een week een stapel grofvuil aan de Kerkstraat 12."
    assert found.sent_at == datetime.fromtimestamp(AT / 1000, UTC)
    assert found.raw.body == body(payload)


def test_files_links_places_and_what_cannot_be_kept() -> None:
    found = one(
        webhook(
            event(
                message={
                    "mid": "m_1",
                    "attachments": [
                        {
                            "type": "sticker",
                            "payload": {"url": "https://cdn/s.png", "sticker_id": 3},
                        },
                        # During Meta's sticker transition the same sticker also comes as image.
                        {"type": "image", "payload": {"url": "https://cdn/s.png", "sticker_id": 3}},
                        {"type": "audio", "payload": {"url": "https://cdn/clip.mp4"}},
                        {
                            "type": "fallback",
                            "title": "Afvalkalender 2027",
                            "url": "https://www.wingene.be/afvalkalender",
                            "payload": None,
                        },
                        {"type": "fallback", "payload": None},
                        {
                            "type": "location",
                            "title": "Pinned Location",
                            "payload": {"coordinates": {"lat": 51.05, "long": 3.27}},
                        },
                        {"type": "template", "payload": {"template_type": "generic"}},
                    ],
                }
            )
        )
    )
    assert isinstance(found, Incoming)
    assert found.media == (
        Media("sticker", "https://cdn/s.png"),
        Media("audio", "https://cdn/clip.mp4"),
    )
    assert found.text == "Afvalkalender 2027 https://www.wingene.be/afvalkalender"
    assert found.location == Location(latitude=51.05, longitude=3.27, address=None)
    assert found.unsupported == ("fallback", "template")


def test_a_quick_reply_carries_a_kind_and_a_reply_names_the_message_answered() -> None:
    found = one(
        webhook(
            event(
                message={
                    "mid": "m_2",
                    "text": "Vraag",
                    "quick_reply": {"payload": "KIND: Question "},
                    "reply_to": {"mid": "m_fake0001"},
                }
            )
        )
    )
    assert (found.kind, found.replies_to) == (Kind.QUESTION, ("m_fake0001",))


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        ("kind:report", Kind.REPORT),
        ("kind:compliment", Kind.COMPLIMENT),
        ("kind:weather", None),
        ("GET_STARTED", None),
        ("KIND: Question ", Kind.QUESTION),
        (None, None),
    ],
)
def test_kinds_are_read_from_payloads(payload: str | None, kind: Kind | None) -> None:
    assert chosen_kind(payload) is kind


def test_a_postback_without_an_id_gets_one_a_redelivery_repeats() -> None:
    pressed = event(postback={"title": "Vraag stellen", "payload": "kind:question"})
    first, again = one(webhook(pressed)), one(webhook(dict(pressed)))
    assert isinstance(first, Incoming)
    assert first.external_id == again.external_id
    assert first.external_id.startswith(f"postback:{PSID}:{AT}:")
    assert (first.text, first.kind) == ("Vraag stellen", Kind.QUESTION)
    other = one(webhook(event(postback={"title": "Melding", "payload": "kind:report"})))
    assert other.external_id != first.external_id


def test_a_timestamp_in_seconds_as_text_is_read_too() -> None:
    found = one(webhook(event(timestamp="1527459824", postback={"mid": "m_3", "title": "Start"})))
    assert found.sent_at == datetime(2018, 5, 27, 22, 23, 44, tzinfo=UTC)


def test_receipts_echoes_and_edits() -> None:
    echo = one(fixture("echo", at=AT))
    assert isinstance(echo, Echo)
    assert (echo.psid, echo.metadata) == (PSID, "meldpunt:outbox:1")
    delivered = one(fixture("delivery", at=AT))
    assert isinstance(delivered, Delivered)
    assert (delivered.psid, delivered.watermark, len(delivered.mids)) == (PSID, AT, 1)
    read = one(fixture("read", at=AT))
    assert read == Read(PSID, AT, read.raw)
    edited = one(fixture("edit", at=AT))
    assert isinstance(edited, Edited)
    assert edited.count == 1
    assert edited.text.endswith("Kerkstraat 21.")


def test_standby_events_are_read_like_the_others() -> None:
    found = one(webhook(event(message={"mid": "m_4", "text": "Hallo"}), key="standby"))
    assert isinstance(found, Incoming)
    assert found.text == "Hallo"


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        ({"message": {"mid": "m", "is_echo": True}}, "echo"),
        ({"message": {"mid": "m", "is_echo": False}}, "message"),
        ({"postback": {}}, "postback"),
        ({"delivery": {}}, "delivery"),
        ({"read": {}}, "read"),
        ({"message_edit": {}}, "message_edit"),
        ({"reaction": {}}, "reaction"),
        ({"optin": {}}, "optin"),
        ({"referral": {}}, "referral"),
        ({"hologram": {}}, None),
    ],
)
def test_the_type_is_the_key_the_event_carries(fields: dict[str, Any], name: str | None) -> None:
    assert event_type(event(**fields)) == name


def test_what_is_no_message_is_ignored_with_a_reason() -> None:
    optin = one(webhook(event(optin={"ref": "checkbox"})))
    assert isinstance(optin, Ignored)
    assert optin.external_id == f"optin:{PSID}:{AT}"
    reaction = one(fixture("reaction", at=AT))
    assert isinstance(reaction, Ignored)
    assert "reacted ❤️" in reaction.reason
    feed = one({"object": "page", "entry": [{"id": "1", "time": AT, "changes": [{}]}]})
    assert isinstance(feed, Ignored)
    assert feed.external_id == f"changes:1:{AT}"


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"message": {"text": "geen id"}}, "a Messenger message event: the message has no mid"),
        ({"message": "tekst"}, "a Messenger message event: message is not a JSON object"),
        ({"message": {"mid": "m", "attachments": {"type": "image"}}}, "attachments is not a list"),
        ({"read": {}}, "the read receipt has no watermark"),
        ({"postback": {"title": "x"}, "timestamp": None}, "neither a mid nor a timestamp"),
        ({"hologram": {}}, "an unknown kind of Messenger event (keys: hologram, timestamp)"),
    ],
)
def test_an_event_that_cannot_be_read_is_unreadable(fields: dict[str, Any], error: str) -> None:
    found = one(webhook(event(**fields)))
    assert isinstance(found, Unreadable)
    assert error in found.error
    assert found.external_id.startswith("sha256-")


def test_an_event_from_a_user_ref_is_unreadable() -> None:
    found = one(webhook({"sender": {"user_ref": "abc"}, "message": {"mid": "m", "text": "x"}}))
    assert isinstance(found, Unreadable)
    assert "sender.id" in found.error


def test_in_a_batch_each_event_gets_a_payload_that_reads_back_alone() -> None:
    events = parse_webhook(body(fixture("batch", at=AT)))
    assert [e.text for e in events if isinstance(e, Incoming)] == [
        "De straatlamp voor nummer 4 is stuk.",
        "Al sinds vrijdag.",
        "Wanneer is het containerpark open?",
        "Ook op zaterdag?",
    ]
    for found in events:
        assert isinstance(found, Incoming)
        assert parse_webhook(found.raw.body) == [found]


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"object": "instagram", "entry": []}', '"instagram"'),
        (b'{"object": "page", "entry": {}}', "no list of entries"),
    ],
)
def test_a_body_that_is_no_messenger_webhook_is_refused_whole(raw: bytes, error: str) -> None:
    with pytest.raises(NotAWebhook, match=error) as caught:
        parse_webhook(raw)
    assert caught.value.external_id.startswith("sha256-")
