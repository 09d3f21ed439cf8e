"""The Bot API as meldpunt uses it: a client built from the options, its errors sorted into
permanent and temporary, long texts split, and the webhook registered with Telegram.

The token is part of every Bot API URL (``/bot<token>/sendMessage``): httpx logs each URL it
calls at INFO and python-telegram-bot its base URL at DEBUG, so both loggers are kept from those
levels, and error texts are scrubbed of the token before anyone reads them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from telegram import Bot
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.request import HTTPXRequest

from connectors.base import SendError
from connectors.telegram.options import TelegramOptions

# Telegram counts a message's length in UTF-16 code units.
MAX_TEXT = 4096
WEBHOOK_PATH = "/webhooks/telegram"
# The update types the connector handles; Telegram sends only these once the webhook says so.
ALLOWED_UPDATES = ("message", "edited_message", "callback_query")
# The only ports Telegram posts webhooks to.
WEBHOOK_PORTS = (443, 80, 88, 8443)

# Plain words for the refusals staff meet most, after Telegram's own description.
REFUSALS: dict[str, str] = {
    "bot was blocked by the user": "the citizen blocked the bot",
    "user is deactivated": "the citizen's Telegram account was deleted",
    "chat not found": "the chat does not exist or was deleted",
    "bot can't initiate conversation": "the citizen never started a chat with the bot",
}


class SetupError(Exception):
    """The webhook cannot be set up as configured; the text says what to change."""


@dataclass(slots=True)
class BotClient:
    """A ``Bot`` with the one HTTP connection pool it uses, closed by ``close``."""

    bot: Bot
    request: HTTPXRequest
    token: str

    def scrub(self, text: str) -> str:
        return text.replace(self.token, "<token>") if self.token else text

    async def close(self) -> None:
        await self.request.shutdown()


def _quieter(name: str, level: int) -> None:
    logger = logging.getLogger(name)
    logger.setLevel(max(level, logger.getEffectiveLevel()))


def build_bot(options: TelegramOptions) -> BotClient:
    """A client for the configured Bot API; it calls nothing until it is used (no ``getMe``)."""
    _quieter("httpx", logging.WARNING)
    _quieter("telegram", logging.INFO)
    timeout = options.timeout_seconds
    request = HTTPXRequest(
        connection_pool_size=8,
        read_timeout=timeout,
        write_timeout=timeout,
        connect_timeout=timeout,
        pool_timeout=timeout,
        media_write_timeout=timeout,
    )
    token = options.bot_token.get_secret_value()
    base = options.base_url
    bot = Bot(
        token,
        base_url=f"{base}/bot",
        base_file_url=f"{base}/file/bot",
        request=request,
        get_updates_request=request,
    )
    return BotClient(bot, request, token)


def describe(exc: TelegramError, client: BotClient) -> str:
    """Telegram's description of a failure, without the token, with plain words when known."""
    detail = client.scrub(str(exc)) or type(exc).__name__
    words = next((w for key, w in REFUSALS.items() if key in detail.lower()), None)
    return f"{detail} ({words})" if words else detail


def send_error(exc: TelegramError, client: BotClient) -> SendError:
    """The dispatcher's view of a failed Bot API call: permanent only when retrying cannot help."""
    detail = describe(exc, client)
    if isinstance(exc, Forbidden | ChatMigrated | BadRequest):
        return SendError(f"Telegram refused the message: {detail}", permanent=True)
    if isinstance(exc, RetryAfter):
        return SendError(f"Telegram asks to send more slowly: {detail}")
    if isinstance(exc, InvalidToken):
        # An operator fixes the token; the answer can go out then.
        return SendError(f"Telegram refused the bot token (TELEGRAM_BOT_TOKEN): {detail}")
    if isinstance(exc, TimedOut):
        return SendError("Telegram did not answer in time")
    if isinstance(exc, NetworkError):
        return SendError(f"Telegram could not be reached: {detail}")
    return SendError(f"Telegram failed: {detail}")


def _utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def split_text(text: str, limit: int = MAX_TEXT) -> list[str]:
    """``text`` in parts Telegram takes, cut at a paragraph, line or space where one is near."""
    parts: list[str] = []
    rest = text.strip()
    while _utf16(rest) > limit:
        cut = min(len(rest), limit)
        while (excess := _utf16(rest[:cut]) - limit) > 0:
            cut -= max(1, (excess + 1) // 2)
        head = rest[:cut]
        for separator in ("\n\n", "\n", " "):
            at = head.rfind(separator)
            # A separator in the first half would leave a stub of a message: cut hard then.
            if at > cut // 2:
                head = head[:at]
                break
        parts.append(head.rstrip())
        rest = rest[len(head) :].lstrip()
    if rest:
        parts.append(rest)
    return parts


def webhook_url(public_url: str) -> str:
    """Where Telegram is to post updates; Telegram posts only over HTTPS and to a few ports.

    Raises:
        SetupError: ``public_url`` is not HTTPS or names a port Telegram does not use.
    """
    parts = urlsplit(public_url)
    if parts.scheme != "https":
        raise SetupError(
            f"Telegram only posts to HTTPS addresses, and public_url is {public_url}: set "
            "MELDPUNT_PUBLIC_URL (or public_url) to the https:// address Telegram can reach"
        )
    try:
        port = parts.port
    except ValueError:
        raise SetupError(f"public_url {public_url} has an invalid port") from None
    if port is not None and port not in WEBHOOK_PORTS:
        ports = ", ".join(str(p) for p in WEBHOOK_PORTS)
        raise SetupError(f"Telegram only posts to ports {ports}; public_url uses port {port}")
    return f"{public_url.rstrip('/')}{WEBHOOK_PATH}"


def _setup_failure(exc: TelegramError, client: BotClient, options: TelegramOptions) -> SetupError:
    detail = describe(exc, client)
    if isinstance(exc, InvalidToken):
        return SetupError(f"Telegram refused the bot token (TELEGRAM_BOT_TOKEN): {detail}")
    if isinstance(exc, NetworkError) and not isinstance(exc, BadRequest):
        return SetupError(f"the Bot API at {options.base_url} could not be reached: {detail}")
    return SetupError(f"Telegram refused: {detail}")


def _require(options: TelegramOptions, *variables: str) -> None:
    if not options.enabled:
        raise SetupError("the Telegram channel is switched off (channels.telegram.enabled)")
    missing = [v for v in options.missing if v in variables]
    if missing:
        raise SetupError(f"set {' and '.join(missing)} first (see channels.telegram)")


async def set_webhook(
    options: TelegramOptions, public_url: str, *, drop_pending: bool
) -> list[str]:
    """Tell Telegram to post the bot's updates to meldpunt; what was done, line by line.

    Raises:
        SetupError: the configuration is incomplete or Telegram refused.
    """
    _require(options, "TELEGRAM_BOT_TOKEN", "TELEGRAM_WEBHOOK_SECRET")
    url = webhook_url(public_url)
    client = build_bot(options)
    try:
        me = await client.bot.get_me()
        await client.bot.set_webhook(
            url,
            secret_token=options.webhook_secret.get_secret_value(),
            allowed_updates=list(ALLOWED_UPDATES),
            drop_pending_updates=drop_pending,
        )
    except TelegramError as exc:
        raise _setup_failure(exc, client, options) from None
    finally:
        await client.close()
    return [
        f"bot @{me.username} (id {me.id}): webhook set to {url}",
        f"updates: {', '.join(ALLOWED_UPDATES)}; secret token from TELEGRAM_WEBHOOK_SECRET",
        "pending updates: dropped"
        if drop_pending
        else "pending updates: kept (Telegram delivers them now)",
    ]


def _when(value: datetime | int | None) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


async def webhook_info(options: TelegramOptions, public_url: str) -> list[str]:
    """What Telegram says about the bot's webhook: address, updates waiting, the last error.

    Raises:
        SetupError: no token, or Telegram refused.
    """
    _require(options, "TELEGRAM_BOT_TOKEN")
    client = build_bot(options)
    try:
        info = await client.bot.get_webhook_info()
    except TelegramError as exc:
        raise _setup_failure(exc, client, options) from None
    finally:
        await client.close()
    expected = f"{public_url.rstrip('/')}{WEBHOOK_PATH}"
    if not info.url:
        where = "none set: run 'meldpunt telegram set-webhook'"
    elif info.url == expected:
        where = f"{info.url} (as configured)"
    else:
        where = f"{info.url} (but public_url gives {expected}: run 'meldpunt telegram set-webhook')"
    updates = ", ".join(info.allowed_updates or ()) or "all types except chat_member"
    error = (
        f"{_when(info.last_error_date)}: {info.last_error_message}"
        if info.last_error_message
        else "none"
    )
    return [
        f"webhook: {where}",
        f"pending updates: {info.pending_update_count}",
        f"updates: {updates}",
        f"last error: {error}",
    ]
