"""``channels.messenger`` in meldpunt.yaml: the Meta app and Page, the Graph API, limits.

Secrets arrive through ``${VAR}`` references; empty values mean "not configured", so the sample
configuration names ``${FACEBOOK_APP_SECRET:-}`` and still starts when nothing is set.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from connectors.options import HttpBase
from ingest.files import PHOTO_AND_PDF_TYPES

GRAPH_API = "https://graph.facebook.com"

# Where an answer may go instead once Messenger no longer takes it (see connector.py).
FallbackChannel = Literal["email", "sms", "whatsapp"]
_FALLBACK: list[FallbackChannel] = ["email", "sms"]


class MessengerOptions(BaseModel):
    """``channels.messenger``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    # Signs every webhook (X-Hub-Signature-256); from the app's Settings > Basic.
    app_secret: SecretStr = SecretStr("")
    # Any string the operator chooses and types again in the app's webhook settings.
    verify_token: SecretStr = SecretStr("")
    # The Page access token (pages_messaging); empty: webhooks are refused, nothing is sent.
    page_token: SecretStr = SecretStr("")
    # Only tests and staging point this elsewhere; empty means Meta's own Graph API.
    graph_base: HttpBase = ""
    graph_version: str = "v21.0"
    # Between 24 hours and 7 days after the citizen's last message, send with the HUMAN_AGENT
    # tag. Meta must have approved the Page's app for it; otherwise switch it off.
    human_agent_tag: bool = True
    fallback: list[FallbackChannel] = Field(default_factory=lambda: _FALLBACK.copy())
    max_attachment_bytes: int = Field(default=25 * 1024 * 1024, ge=0)
    allowed_media_types: list[str] = Field(
        default_factory=lambda: [
            *PHOTO_AND_PDF_TYPES,
            # Voice clips and short videos, as Messenger sends them.
            "audio/mp4",
            "audio/mpeg",
            "audio/aac",
            "video/mp4",
            "video/quicktime",
        ]
    )
    timeout_seconds: float = Field(default=20.0, gt=0)

    @field_validator("graph_version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not re.fullmatch(r"v\d{1,3}\.\d{1,2}", value.strip()):
            raise ValueError('write the Graph API version as Meta does, e.g. "v21.0"')
        return value.strip()

    @property
    def base_url(self) -> str:
        return self.graph_base or GRAPH_API

    @property
    def send_url(self) -> str:
        return f"{self.base_url}/{self.graph_version}/me/messages"

    @property
    def missing(self) -> list[str]:
        """The environment variables of the sample configuration still to set."""
        return [
            variable
            for variable, value in (
                ("FACEBOOK_APP_SECRET", self.app_secret),
                ("FACEBOOK_VERIFY_TOKEN", self.verify_token),
                ("FACEBOOK_PAGE_TOKEN", self.page_token),
            )
            if not value.get_secret_value()
        ]
