"""The wire format on its own: visitor tokens, frames from the widget, image types, file names."""

from __future__ import annotations

import json

import pytest

from connectors.webchat.connector import content_disposition
from connectors.webchat.protocol import (
    BadFrame,
    ChatText,
    ContactDetails,
    Hello,
    OfflineMessage,
    Ping,
    Typing,
    error_frame,
    new_visitor_id,
    parse_frame,
    sniff_image,
    visitor_of,
    visitor_token,
)

KEY = b"test-secret-key-0123456789"


def test_a_token_carries_the_visitor_id_and_only_this_key_reads_it() -> None:
    visitor = new_visitor_id()
    token = visitor_token(KEY, visitor)
    assert token.startswith(f"{visitor}.")
    assert "=" not in token  # base64url without padding
    assert visitor_of(KEY, token) == visitor
    assert visitor_of(b"another key", token) is None
    assert new_visitor_id() != visitor


@pytest.mark.parametrize(
    "token",
    [
        None,
        42,
        "",
        "no-dot-at-all-in-this-one",
        "short.sig",
        "AAAAAAAAAAAAAAAAAAAAAA.",
        "AAAAAAAAAAAAAAAAAAAAAA.c2lnbmF0dXJl",
        "AAAA AAAAAAAAAAAAAAAAAA.x",
        "A" * 300,
    ],
)
def test_anything_else_is_no_token(token: object) -> None:
    assert visitor_of(KEY, token) is None


def test_a_signature_of_another_visitor_does_not_fit() -> None:
    one, other = new_visitor_id(), new_visitor_id()
    signature = visitor_token(KEY, other).split(".", 1)[1]
    assert visitor_of(KEY, f"{one}.{signature}") is None


@pytest.mark.parametrize(
    ("frame", "parsed"),
    [
        ({"type": "hello", "visitor": "x.y", "lang": "fr"}, Hello("x.y", "fr")),
        ({"type": "hello", "visitor": None, "lang": "de"}, Hello(None, "nl")),
        ({"type": "hello"}, Hello(None, "nl")),
        ({"type": "message", "client_id": "c-1_A", "text": " hoi "}, ChatText("c-1_A", " hoi ")),
        ({"type": "contact", "email": "a@b.be", "phone": None}, ContactDetails("a@b.be", None)),
        ({"type": "contact", "email": "  ", "phone": "0470"}, ContactDetails(None, "0470")),
        (
            {"type": "offline_message", "client_id": "o1", "text": "t", "email": "a@b.be"},
            OfflineMessage("o1", "t", "a@b.be", None),
        ),
        ({"type": "typing"}, Typing()),
        ({"type": "ping"}, Ping()),
    ],
)
def test_frames_are_read_by_their_type(frame: dict[str, object], parsed: object) -> None:
    assert parse_frame(json.dumps(frame)) == parsed


@pytest.mark.parametrize(
    ("text", "client_id"),
    [
        ("{", None),
        ('"a string"', None),
        ("[]", None),
        ('{"type": "shout"}', None),
        ('{"type": 5}', None),
        ('{"text": "no type"}', None),
        ('{"type": "message", "text": "no client id"}', None),
        ('{"type": "message", "client_id": "' + "x" * 65 + '", "text": "t"}', None),
        ('{"type": "message", "client_id": "a/b", "text": "t"}', None),
        ('{"type": "message", "client_id": "c1", "text": null}', "c1"),
        ('{"type": "contact", "email": 5}', None),
        ('{"type": "offline_message", "client_id": "c2", "text": "t", "phone": []}', "c2"),
    ],
)
def test_frames_outside_the_protocol_are_refused_naming_their_message(
    text: str, client_id: str | None
) -> None:
    with pytest.raises(BadFrame) as refused:
        parse_frame(text)
    assert refused.value.client_id == client_id
    assert str(refused.value)


def test_error_frames_speak_the_visitor_s_language() -> None:
    frame = error_frame("too_long", "fr", "c1", max_chars=2000)
    assert frame == {
        "type": "error",
        "client_id": "c1",
        "code": "too_long",
        "message": "Votre message est trop long (2000 caractères au maximum).",
    }
    assert "2000 tekens" in error_frame("too_long", "nl", max_chars=2000)["message"]


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "image/png"),
        (b"GIF89a\x01\x00", "image/gif"),
        (b"GIF87a\x01\x00", "image/gif"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", None),
        (b"%PDF-1.7", None),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", None),
        (b"MZ\x90\x00", None),
        (b"", None),
    ],
)
def test_an_image_is_known_by_its_first_bytes(data: bytes, kind: str | None) -> None:
    assert sniff_image(data) == kind


@pytest.mark.parametrize(
    ("name", "header"),
    [
        ("plan.png", "inline; filename=\"plan.png\"; filename*=UTF-8''plan.png"),
        ("café.jpg", "inline; filename=\"caf_.jpg\"; filename*=UTF-8''caf%C3%A9.jpg"),
        (
            'a"b\r\nX-Evil: 1.png',
            "inline; filename=\"abX-Evil 1.png\"; filename*=UTF-8''abX-Evil%201.png",
        ),
        ("../../etc/passwd", "inline; filename=\"passwd\"; filename*=UTF-8''passwd"),
        ("", "inline; filename=\"bestand\"; filename*=UTF-8''bestand"),
    ],
)
def test_a_file_name_in_a_header_cannot_break_out(name: str, header: str) -> None:
    assert content_disposition("inline", name) == header
