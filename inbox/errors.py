"""The errors the staff API answers with, each a status, a stable code and a readable message.

Handlers and ticket actions raise these; the API's error middleware renders them as
``{"error": {"code", "message", "details"}}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ApiError(Exception):
    """A request that cannot be served as asked; ``code`` is stable for clients to branch on."""

    status = 400

    def __init__(
        self,
        code: str,
        message: str,
        details: Any = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.headers = dict(headers or {})


class BadRequestError(ApiError):
    status = 400


class UnauthorizedError(ApiError):
    status = 401


class ForbiddenError(ApiError):
    status = 403


class NotFoundError(ApiError):
    status = 404


class ConflictError(ApiError):
    """The request is valid but the ticket's current state does not allow it."""

    status = 409


class UnprocessableError(ApiError):
    """The body is well-formed but asks for the impossible (unknown department, no address)."""

    status = 422


class ServiceUnavailableError(ApiError):
    """A part of the service the request needs is not running; nothing was done."""

    status = 503
