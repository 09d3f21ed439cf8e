"""Checks that a webhook really comes from Twilio (``X-Twilio-Signature``).

Twilio signs the full URL it called plus the sorted form fields with the account's auth token
(HMAC-SHA1). Behind a reverse proxy the Host header and scheme are the proxy's, so the URL is
rebuilt from the configured public URL, never from the request.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web
from twilio.request_validator import RequestValidator

SIGNATURE_HEADER = "X-Twilio-Signature"


class SignatureCheck:
    """Validates requests against one auth token and the service's public URL."""

    def __init__(self, auth_token: str, public_url: str) -> None:
        self._validator = RequestValidator(auth_token) if auth_token else None
        self._public_url = public_url.rstrip("/")

    def url_of(self, request: web.Request) -> str:
        """The URL Twilio called: the public base plus the path and query as sent."""
        return self._public_url + request.raw_path

    def valid(self, request: web.Request, form: Mapping[str, str]) -> bool:
        signature = request.headers.get(SIGNATURE_HEADER, "")
        if self._validator is None or not signature:
            return False
        return bool(self._validator.validate(self.url_of(request), dict(form), signature))
