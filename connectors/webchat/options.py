"""``channels.webchat`` in meldpunt.yaml: where the chat may be embedded, sizes, limits, timing.

The chat needs no provider account, so it is on by default: the embedded default serves it as
soon as the town puts the script tag on its website and names that site in ``allowed_origins``.
"""

from __future__ import annotations

import ipaddress
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

ImageType = Literal["image/jpeg", "image/png", "image/webp", "image/gif"]
IMAGE_TYPES: tuple[ImageType, ...] = ("image/jpeg", "image/png", "image/webp", "image/gif")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def web_origin(value: str) -> str:
    """``value`` as a browser writes an ``Origin`` header: scheme://host[:port], lower case.

    Raises:
        ValueError: not an http(s) origin, or it has a path, query or credentials.
    """
    text = value.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError(f"'{text}' is not a web address") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"'{text}' must start with https:// or http:// and name a host")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"'{text}' must be only scheme and host, e.g. https://www.wingene.be")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    suffix = f":{port}" if port is not None and port != _DEFAULT_PORTS[scheme] else ""
    return f"{scheme}://{host}{suffix}"


class WebChatOptions(BaseModel):
    """``channels.webchat``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    # The town's website(s) that embed the widget; public_url is always allowed.
    allowed_origins: list[str] = Field(default_factory=list)
    max_chars: int = Field(default=2000, ge=1, le=20_000)
    max_upload_bytes: int = Field(default=5 * 1024 * 1024, ge=1024, le=50 * 1024 * 1024)
    upload_types: list[ImageType] = Field(default_factory=lambda: list(IMAGE_TYPES))
    # Per visitor.
    messages_per_minute: int = Field(default=20, ge=1)
    uploads_per_ten_minutes: int = Field(default=5, ge=1)
    # Per client address (one address can be a whole town hall behind NAT: be generous).
    new_visitors_per_address_per_hour: int = Field(default=60, ge=1)
    messages_per_address_per_minute: int = Field(default=120, ge=1)
    # Reverse proxies whose X-Forwarded-For is believed, e.g. ["10.0.0.0/8"].
    trusted_proxies: list[str] = Field(default_factory=list)
    # How long after their last socket closed a visitor still counts as present (a page load).
    grace_seconds: float = Field(default=30.0, ge=0, le=3600)
    # How often queue places and open/closed are recomputed and pushed.
    queue_refresh_seconds: float = Field(default=5.0, gt=0, le=300)

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(web_origin(v) for v in value))

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: list[str]) -> list[str]:
        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(
                    f"'{network}' is not an address or network like 10.0.0.0/8"
                ) from None
        return value

    @field_validator("upload_types")
    @classmethod
    def _types(cls, value: list[ImageType]) -> list[ImageType]:
        return list(dict.fromkeys(value))
