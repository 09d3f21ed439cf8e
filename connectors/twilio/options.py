"""``channels.twilio`` in meldpunt.yaml: the Twilio account, the numbers it sends from, limits.

Secrets arrive through ``${VAR}`` references. Empty values mean "not configured", so the sample
configuration can name ``${TWILIO_ACCOUNT_SID:-}`` and still start when nothing is set.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from connectors.options import HttpBase
from ingest.files import PHOTO_AND_PDF_TYPES

TWILIO_API = "https://api.twilio.com"

# Where a WhatsApp answer may go instead when the 24-hour window is closed.
FallbackChannel = Literal["sms", "email"]
_FALLBACK: list[FallbackChannel] = ["sms", "email"]


def _e164(value: str) -> str:
    number = value.strip().removeprefix("whatsapp:")
    if number and not (number.startswith("+") and number[1:].isdigit()):
        raise ValueError("write the number in E.164 form, e.g. +3250123456")
    return number


class VoiceOptions(BaseModel):
    """``channels.twilio.voice``: what a caller hears and where the call goes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    greeting: str = "Welkom bij het meldpunt van de gemeente."
    # A keypad menu that sets the ticket's kind before the call goes on.
    menu: bool = False
    menu_prompt: str = "Druk 1 voor een melding, 2 voor een vraag, 3 voor een klacht."
    # E.164; empty: every call goes to voicemail, also within office hours.
    front_desk_number: str = ""
    ring_seconds: int = Field(default=20, ge=5, le=60)
    voicemail_prompt: str = (
        "We kunnen uw oproep nu niet beantwoorden. Spreek na de toon uw naam, uw vraag en "
        "eventueel een adres in. Druk daarna op hekje of leg in."
    )
    max_recording_seconds: int = Field(default=120, ge=10, le=3600)
    # Twilio's <Record transcribe> is made for English: Dutch comes out rough. Off: no text.
    transcribe: bool = True
    # Answers to a voice ticket go by SMS to the caller's number; off: by e-mail, when the
    # citizen is known by an e-mail address, else the answer waits and says why.
    reply_by_sms: bool = True
    # Whether a missed caller gets the usual acknowledgement (by SMS): off, since someone who
    # hung up did not ask for a message and a landline cannot receive one.
    acknowledge_missed_calls: bool = False

    @field_validator("front_desk_number")
    @classmethod
    def _number(cls, value: str) -> str:
        return _e164(value)


class TwilioOptions(BaseModel):
    """``channels.twilio``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    account_sid: str = ""
    auth_token: SecretStr = SecretStr("")
    # Only tests and staging point this elsewhere; empty means Twilio's own API.
    api_base: HttpBase = ""
    # E.164, e.g. +3250123456; empty: no SMS is sent (SMS still comes in if the number exists).
    sms_number: str = ""
    # The WhatsApp sender's number, with or without the "whatsapp:" prefix.
    whatsapp_sender: str = ""
    # The approved WhatsApp template (Content SID, HX…) sent when the 24-hour window is closed.
    whatsapp_template_sid: str = ""
    whatsapp_fallback: list[FallbackChannel] = Field(default_factory=lambda: _FALLBACK.copy())
    max_media_bytes: int = Field(default=10 * 1024 * 1024, ge=0)
    allowed_media_types: list[str] = Field(
        default_factory=lambda: [
            *PHOTO_AND_PDF_TYPES,
            # Voice notes and short videos, as WhatsApp sends them.
            "audio/ogg",
            "audio/mpeg",
            "audio/amr",
            "video/mp4",
        ]
    )
    timeout_seconds: float = Field(default=20.0, gt=0)
    voice: VoiceOptions = Field(default_factory=VoiceOptions)

    @field_validator("sms_number", "whatsapp_sender")
    @classmethod
    def _number(cls, value: str) -> str:
        return _e164(value)

    @property
    def base_url(self) -> str:
        return self.api_base or TWILIO_API

    @property
    def missing(self) -> list[str]:
        """The environment variables of the sample configuration still to set."""
        return [
            variable
            for variable, value in (
                ("TWILIO_ACCOUNT_SID", self.account_sid),
                ("TWILIO_AUTH_TOKEN", self.auth_token.get_secret_value()),
            )
            if not value
        ]
