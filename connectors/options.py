"""Option types several channels' sections of meldpunt.yaml share."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator


def _http_base(value: str) -> str:
    value = value.strip()
    if value and not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value.rstrip("/")


# A provider API's address, only set for tests and staging; empty means the provider's own.
HttpBase = Annotated[str, AfterValidator(_http_base)]
