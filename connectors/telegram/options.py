"""``channels.telegram`` in meldpunt.yaml: the bot's token, the webhook's secret, limits, welcome.

Secrets arrive through ``${VAR}`` references. Empty values mean "not configured", so the sample
configuration can name ``${TELEGRAM_BOT_TOKEN:-}`` and still start when nothing is set.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from connectors.options import HttpBase
from ingest.files import PHOTO_AND_PDF_TYPES

TELEGRAM_API = "https://api.telegram.org"
# What Telegram accepts as a webhook's secret_token (and sends back in the header).
_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")
# What @BotFather hands out: the bot's numeric id, a colon, then letters, digits, '_' and '-'.
_TOKEN = re.compile(r"[0-9]+:[A-Za-z0-9_-]+")


class WelcomeTexts(BaseModel):
    """``channels.telegram.welcome``: the answer to ``/start``, per language of the citizen's app.

    ``{town}`` is replaced by the town's name. Buttons to choose the kind follow the text.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    nl: str = Field(
        default="Welkom bij het meldpunt van {town}. Waarover gaat uw bericht? Kies hieronder, "
        "of schrijf meteen. Een foto, uw locatie of een spraakbericht mag ook.",
        min_length=1,
        max_length=4096,
    )
    fr: str = Field(
        default="Bienvenue au point de contact de {town}. De quoi s'agit-il ? Choisissez "
        "ci-dessous, ou écrivez directement. Photo, position ou message vocal bienvenus.",
        min_length=1,
        max_length=4096,
    )
    en: str = Field(
        default="Welcome to the {town} contact point. What is your message about? Choose "
        "below, or just write. A photo, your location or a voice note is welcome too.",
        min_length=1,
        max_length=4096,
    )


class TelegramOptions(BaseModel):
    """``channels.telegram``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    bot_token: SecretStr = SecretStr("")
    webhook_secret: SecretStr = SecretStr("")
    # Only tests, staging or a self-hosted Bot API server point this elsewhere.
    api_base: HttpBase = ""
    # Telegram lets a bot fetch files of at most 20 MB; larger ones are noted, not fetched.
    max_file_bytes: int = Field(default=10 * 1024 * 1024, ge=0)
    allowed_media_types: list[str] = Field(
        default_factory=lambda: [
            *PHOTO_AND_PDF_TYPES,
            # Voice notes (Opus in Ogg), audio files and short videos, as Telegram sends them.
            "audio/ogg",
            "audio/mpeg",
            "audio/mp4",
            "video/mp4",
        ]
    )
    timeout_seconds: float = Field(default=20.0, gt=0)
    welcome: WelcomeTexts = Field(default_factory=WelcomeTexts)

    @field_validator("bot_token")
    @classmethod
    def _token(cls, value: SecretStr) -> SecretStr:
        token = value.get_secret_value().strip()
        if token and not _TOKEN.fullmatch(token):
            # The value itself is never repeated: it is a secret.
            raise ValueError("not a bot token as @BotFather gives it (digits, ':', then letters)")
        return SecretStr(token)

    @field_validator("webhook_secret")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        secret = value.get_secret_value().strip()
        if secret and not _SECRET.fullmatch(secret):
            raise ValueError(
                "use 1 to 256 characters A-Z, a-z, 0-9, '_' or '-' (Telegram allows no others), "
                "e.g. the output of: openssl rand -hex 32"
            )
        return SecretStr(secret)

    @property
    def base_url(self) -> str:
        return self.api_base or TELEGRAM_API

    @property
    def missing(self) -> list[str]:
        """The environment variables of the sample configuration still to set."""
        return [
            variable
            for variable, value in (
                ("TELEGRAM_BOT_TOKEN", self.bot_token),
                ("TELEGRAM_WEBHOOK_SECRET", self.webhook_secret),
            )
            if not value.get_secret_value()
        ]
