"""Checks that a webhook really comes from Meta, and answers Meta's subscription handshake.

Meta signs the raw request body with the app secret (HMAC-SHA256) and sends
``X-Hub-Signature-256: sha256=<hex>``. The check runs on the bytes as received, before any JSON is
read: re-serialised JSON would not match. Both comparisons are constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

SIGNATURE_HEADER = "X-Hub-Signature-256"
_PREFIX = "sha256="


def sign(app_secret: str, body: bytes) -> str:
    """The header value Meta sends with ``body``."""
    digest = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return f"{_PREFIX}{digest}"


def signature_valid(app_secret: str, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is Meta's signature of ``body``; False without a secret or header."""
    if not app_secret or not header or not header.startswith(_PREFIX):
        return False
    expected = sign(app_secret, body)
    # Meta writes lower-case hex; compare case-insensitively, as bytes of equal meaning.
    return hmac.compare_digest(expected.encode(), header.strip().lower().encode())


def handshake_challenge(verify_token: str, query: Mapping[str, str]) -> str | None:
    """The ``hub.challenge`` to echo when Meta's subscription request names our verify token."""
    if not verify_token or query.get("hub.mode") != "subscribe":
        return None
    given = query.get("hub.verify_token", "")
    if not hmac.compare_digest(given.encode(), verify_token.encode()):
        return None
    return query.get("hub.challenge")
