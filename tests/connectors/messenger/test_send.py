"""What goes to the Send API: the window rules, pieces of text, file types, Graph's errors."""

from __future__ import annotations

from datetime import timedelta

import pytest

from connectors.messenger.send import (
    TEXT_LIMIT,
    Closed,
    GraphError,
    attachment_type,
    messaging_fields,
    split_text,
)
from tests.connectors.messenger.conftest import graph_error

RESPONSE = {"messaging_type": "RESPONSE"}
TAGGED = {"messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"}


@pytest.mark.parametrize(
    ("hours", "automatic", "tag", "expected"),
    [
        (0, False, True, RESPONSE),
        (23.9, True, True, RESPONSE),
        (23.95, False, True, TAGGED),
        (30, False, True, TAGGED),
        (24 * 7 - 0.1, False, True, TAGGED),
        (24 * 7 - 0.05, False, True, "more than 7 days"),
        (30, False, False, "human_agent_tag is off"),
        (30, True, True, "no person's answer"),
        (None, False, True, "never wrote"),
    ],
)
def test_the_window_decides_how_an_answer_goes(
    hours: float | None, automatic: bool, tag: bool, expected: dict[str, str] | str
) -> None:
    since = timedelta(hours=hours) if hours is not None else None
    if isinstance(expected, dict):
        assert messaging_fields(since, automatic=automatic, human_agent_tag=tag) == expected
    else:
        with pytest.raises(Closed, match=expected):
            messaging_fields(since, automatic=automatic, human_agent_tag=tag)


def test_short_text_is_one_piece_and_nothing_is_none() -> None:
    assert split_text("  Bedankt.  ") == ["Bedankt."]
    assert split_text("   ") == []


def test_long_text_is_cut_at_a_paragraph_then_a_space() -> None:
    first = "a " * 700  # 1400 characters
    text = f"{first.strip()}\n\n{'woord ' * 300}".strip()
    pieces = split_text(text)
    assert pieces[0] == first.strip()
    assert all(len(p) <= TEXT_LIMIT for p in pieces)
    assert " ".join(" ".join(pieces).split()) == " ".join(text.split())
    words = split_text("woord " * 1000)
    assert all(len(p) <= TEXT_LIMIT for p in words)
    assert all(not p.startswith(" ") and not p.endswith("d ") for p in words)
    assert sum(p.count("woord") for p in words) == 1000


def test_a_word_longer_than_the_limit_is_cut_where_it_must() -> None:
    pieces = split_text("x" * 4500)
    assert [len(p) for p in pieces] == [2000, 2000, 500]


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("image/jpeg", "image"),
        ("video/mp4", "video"),
        ("audio/mpeg", "audio"),
        ("application/pdf", "file"),
        ("text/plain", "file"),
    ],
)
def test_files_are_typed_as_messenger_names_them(content_type: str, expected: str) -> None:
    assert attachment_type(content_type) == expected


@pytest.mark.parametrize(
    ("status", "body", "permanent", "outside"),
    [
        (*graph_error(10, "outside of allowed window", 2018278), False, True),
        (*graph_error(551, "This person isn't available right now.", 1545041), True, False),
        (*graph_error(100, "No matching user found", 2018001), True, False),
        (*graph_error(190, "Invalid OAuth access token."), False, False),
        (*graph_error(4, "Application request limit reached", status=403), False, False),
        (*graph_error(613, "Calls to this api have exceeded the rate limit."), False, False),
        (*graph_error(1200, "Temporary send message failure.", status=500), False, False),
        (*graph_error(2, "An unexpected error has occurred.", status=500), False, False),
        (*graph_error(9999, "Something new", status=500), False, False),
        (*graph_error(9999, "Something new", status=400), True, False),
        (502, None, False, False),
        (429, {}, False, False),
        (404, "<html>", True, False),
    ],
)
def test_graph_errors_are_sorted(status: int, body: object, permanent: bool, outside: bool) -> None:
    error = GraphError.of(status, body)
    assert (error.permanent, error.outside_window) == (permanent, outside)


def test_an_error_is_described_in_plain_words_with_meta_s_own() -> None:
    error = GraphError.of(*graph_error(190, "Error validating access token: Session has expired."))
    assert error.describe() == (
        "the Page access token is invalid or expired: set a new FACEBOOK_PAGE_TOKEN; "
        "Error validating access token: Session has expired. (code 190, fbtrace AbCdEfGh123)"
    )
    assert GraphError.of(502, None).describe() == "HTTP 502 (HTTP 502)"
