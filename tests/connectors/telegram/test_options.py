"""``channels.telegram``: what an operator can get wrong, and when the channel is off."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from connectors.base import ConnectorContext
from connectors.telegram.api import SetupError, webhook_url
from connectors.telegram.connector import TelegramConnector
from connectors.telegram.options import TelegramOptions
from tests.connectors.telegram.conftest import SECRET, TOKEN


def connector(**options: object) -> TelegramConnector:
    context = ConnectorContext(
        intake=None,  # type: ignore[arg-type]
        files=None,  # type: ignore[arg-type]
        cursors=None,  # type: ignore[arg-type]
        public_url="https://meldpunt.wingene.example",
        town_name="Wingene",
        secret_key=b"k",
    )
    return TelegramConnector(context, TelegramOptions.model_validate(options))


def test_the_defaults_are_a_valid_section_and_the_channel_says_what_is_missing() -> None:
    assert connector().disabled_reason == (
        "no Telegram bot configured (set TELEGRAM_BOT_TOKEN, TELEGRAM_WEBHOOK_SECRET)"
    )
    assert connector(bot_token=TOKEN).disabled_reason == (
        "no Telegram bot configured (set TELEGRAM_WEBHOOK_SECRET)"
    )
    live = connector(bot_token=TOKEN, webhook_secret=SECRET)
    assert live.disabled_reason is None and live.can_send
    off = connector(bot_token=TOKEN, webhook_secret=SECRET, enabled=False)
    assert off.disabled_reason == "switched off in meldpunt.yaml (channels.telegram.enabled)"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("webhook_secret", "geheim met spaties", "A-Z, a-z, 0-9, '_' or '-'"),
        ("webhook_secret", "x" * 257, "1 to 256 characters"),
        ("bot_token", "AAHk3xQ9vWingene", "not a bot token"),
        ("api_base", "api.telegram.org", "must start with http:// or https://"),
    ],
)
def test_values_telegram_would_refuse_are_refused_without_repeating_secrets(
    field: str, value: str, message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        TelegramOptions.model_validate({field: value})
    [error] = caught.value.errors()
    assert message in error["msg"]
    if field != "api_base":
        assert value not in error["msg"]


def test_secrets_are_trimmed_and_never_shown() -> None:
    options = TelegramOptions.model_validate(
        {"bot_token": f" {TOKEN}\n", "webhook_secret": f"{SECRET} ", "api_base": "http://x/"}
    )
    assert options.bot_token.get_secret_value() == TOKEN
    assert options.webhook_secret.get_secret_value() == SECRET
    assert options.base_url == "http://x"
    assert TOKEN not in repr(options) and SECRET not in repr(options)
    assert TelegramOptions().base_url == "https://api.telegram.org"


@pytest.mark.parametrize(
    ("public_url", "result"),
    [
        ("https://meldpunt.wingene.example", "https://meldpunt.wingene.example/webhooks/telegram"),
        (
            "https://meldpunt.wingene.example:8443/",
            "https://meldpunt.wingene.example:8443/webhooks/telegram",
        ),
        ("https://wingene.example/meldpunt", "https://wingene.example/meldpunt/webhooks/telegram"),
        ("http://meldpunt.wingene.example", "only posts to HTTPS"),
        ("https://meldpunt.wingene.example:8750", "ports 443, 80, 88, 8443"),
        ("http://127.0.0.1:8750", "only posts to HTTPS"),
    ],
)
def test_telegram_posts_only_to_https_on_four_ports(public_url: str, result: str) -> None:
    if result.startswith("https://"):
        assert webhook_url(public_url) == result
    else:
        with pytest.raises(SetupError, match=result):
            webhook_url(public_url)
