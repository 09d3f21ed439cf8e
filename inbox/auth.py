"""Who is asking: bearer tokens checked on every API request, and what each role may see."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from inbox.errors import ForbiddenError, UnauthorizedError
from store.db import Database
from store.models import User
from store.users import Role, user_for_token


@dataclass(frozen=True, slots=True)
class Staff:
    """The authenticated staff member of a request."""

    id: int
    email: str
    name: str | None
    role: Role
    departments: frozenset[str]

    @classmethod
    def from_user(cls, user: User) -> Staff:
        if user.id is None:
            raise ValueError("user is not stored")
        try:
            role = Role(user.role)
        except ValueError:
            raise ForbiddenError("forbidden", "your account has no valid role") from None
        return cls(user.id, user.email, user.name, role, frozenset(user.departments))

    @property
    def sees_all(self) -> bool:
        """Admins and operators see every department; agents only their own."""
        return self.role in (Role.ADMIN, Role.OPERATOR)

    def can_see(self, department: str) -> bool:
        return self.sees_all or department in self.departments


STAFF = web.RequestKey("meldpunt.staff", Staff)
REALM = "meldpunt"


def bearer_auth(db: Database, public_routes: Collection[str]) -> Middleware:
    """Middleware that requires a live bearer token except on routes named in ``public_routes``.

    Unmatched paths pass through so they get their 404/405 rather than a 401.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        match = request.match_info
        if match.http_exception is not None or match.route.name in public_routes:
            return await handler(request)
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise UnauthorizedError(
                "unauthorized",
                "send 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": f'Bearer realm="{REALM}"'},
            )
        async with db.session() as session:
            user = await user_for_token(session, token)
        if user is None:
            raise UnauthorizedError(
                "invalid_token",
                "the token is unknown, revoked or its user inactive",
                headers={"WWW-Authenticate": f'Bearer realm="{REALM}", error="invalid_token"'},
            )
        request[STAFF] = Staff.from_user(user)
        return await handler(request)

    return middleware
