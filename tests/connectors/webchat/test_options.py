"""``channels.webchat``: defaults that work without any setting, and errors an operator can fix."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from connectors.webchat.options import WebChatOptions, web_origin


def test_the_defaults_work_without_any_setting() -> None:
    options = WebChatOptions()
    assert options.enabled
    assert options.allowed_origins == []
    assert (options.max_chars, options.max_upload_bytes) == (2000, 5 * 1024 * 1024)
    assert options.upload_types == ["image/jpeg", "image/png", "image/webp", "image/gif"]
    assert options.grace_seconds == 30


@pytest.mark.parametrize(
    ("written", "origin"),
    [
        ("https://www.wingene.be", "https://www.wingene.be"),
        ("https://www.wingene.be/", "https://www.wingene.be"),
        ("HTTPS://WWW.Wingene.BE:443", "https://www.wingene.be"),
        ("http://localhost:8080", "http://localhost:8080"),
        ("http://[::1]:80", "http://[::1]"),
    ],
)
def test_allowed_origins_are_written_as_browsers_send_them(written: str, origin: str) -> None:
    assert web_origin(written) == origin
    assert WebChatOptions(allowed_origins=[written, origin]).allowed_origins == [origin]


@pytest.mark.parametrize(
    "written",
    ["www.wingene.be", "ftp://wingene.be", "https://www.wingene.be/chat", "https://", "null"],
)
def test_an_origin_that_is_not_one_says_how_to_write_it(written: str) -> None:
    with pytest.raises(ValidationError, match="https://"):
        WebChatOptions(allowed_origins=[written])


def test_trusted_proxies_must_be_networks_and_upload_types_images() -> None:
    assert WebChatOptions(trusted_proxies=["10.0.0.0/8", "::1"]).trusted_proxies
    with pytest.raises(ValidationError, match=r"10\.0\.0\.0/8"):
        WebChatOptions(trusted_proxies=["the proxy"])
    with pytest.raises(ValidationError):
        WebChatOptions.model_validate({"upload_types": ["image/svg+xml"]})
    with pytest.raises(ValidationError):
        WebChatOptions.model_validate({"queue_refresh_seconds": 0})
