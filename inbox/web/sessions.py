"""Sign-in for the web inbox: server-side sessions, CSRF tokens and the lock-out.

The session cookie holds a random token; the database keeps only its SHA-256 with the user, a
CSRF token for the session's forms and when it expires. Sessions slide: each visit moves the
expiry on by the idle time, at most once a minute. A wrong password counts against the account;
after ``max_failures`` in a row it is locked for ``lockout`` (a right password then does not
help either), and a successful sign-in clears the count. Unknown e-mail addresses take as long
to refuse as wrong passwords, so the answer time does not tell which accounts exist. The argon2
check (tens of milliseconds by design) runs in a thread, so other requests go on meanwhile.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlmodel import col

from inbox.auth import Staff
from store.db import Database
from store.models import User, WebSession
from store.users import hash_password, normalise_email, verify_password

COOKIE = "meldpunt_session"
# Compared against for unknown addresses, so they cost one argon2 check like a real account.
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class SignedIn:
    """The staff member of a request to the web inbox, with their session's CSRF token."""

    staff: Staff
    session_id: int
    csrf: str

    def csrf_ok(self, sent: str | None) -> bool:
        return sent is not None and hmac.compare_digest(self.csrf, sent)


@dataclass(frozen=True, slots=True)
class LoginResult:
    user_id: int | None
    # Set when the account is locked (now or by this attempt): until when.
    locked_until: datetime | None = None


class Sessions:
    def __init__(
        self,
        db: Database,
        *,
        idle: timedelta = timedelta(hours=8),
        max_failures: int = 5,
        lockout: timedelta = timedelta(minutes=15),
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.db = db
        self.idle = idle
        self.max_failures = max_failures
        self.lockout = lockout
        self.clock = clock or (lambda: datetime.now(UTC))

    async def login(self, email: str, password: str) -> LoginResult:
        """Check the password and count the attempt; ``user_id`` is set when it may sign in."""
        now = self.clock()
        async with self.db.session() as session:
            # The row stays locked until this attempt is counted: guesses sent all at once
            # must each count, not overwrite each other's count (PostgreSQL; SQLite writes one
            # transaction at a time anyway).
            user = (
                await session.scalars(
                    sa.select(User)
                    .where(col(User.email) == normalise_email(email))
                    .with_for_update()
                )
            ).first()
            if user is None or not user.active:
                await asyncio.to_thread(verify_password, _DUMMY_HASH, password)
                return LoginResult(None)
            if user.locked_until is not None and user.locked_until > now:
                return LoginResult(None, user.locked_until)
            if not await asyncio.to_thread(verify_password, user.password_hash, password):
                user.failed_logins += 1
                if user.failed_logins >= self.max_failures:
                    user.locked_until = now + self.lockout
                    user.failed_logins = 0
                    return LoginResult(None, user.locked_until)
                return LoginResult(None)
            user.failed_logins = 0
            user.locked_until = None
            assert user.id is not None
            return LoginResult(user.id)

    async def start(self, user_id: int) -> str:
        """A new session for the user; returns the cookie's token."""
        token = secrets.token_urlsafe(32)
        now = self.clock()
        async with self.db.session() as session:
            session.add(
                WebSession(
                    token_hash=_digest(token),
                    user_id=user_id,
                    csrf_token=secrets.token_urlsafe(32),
                    created_at=now,
                    last_seen_at=now,
                    expires_at=now + self.idle,
                )
            )
        return token

    async def find(self, token: str | None) -> SignedIn | None:
        """The signed-in staff member of a cookie, or None (no cookie, expired, user disabled)."""
        if not token:
            return None
        now = self.clock()
        async with self.db.session() as session:
            row = (
                await session.execute(
                    sa.select(WebSession, User)
                    .join(User, col(User.id) == col(WebSession.user_id))
                    .where(col(WebSession.token_hash) == _digest(token))
                )
            ).first()
            if row is None:
                return None
            web, user = row
            if web.expires_at <= now or not user.active:
                await session.delete(web)
                return None
            if now - web.last_seen_at > timedelta(minutes=1):
                web.last_seen_at = now
                web.expires_at = now + self.idle
            assert web.id is not None
            return SignedIn(Staff.from_user(user), web.id, web.csrf_token)

    async def end(self, session_id: int) -> None:
        async with self.db.session() as session:
            await session.execute(sa.delete(WebSession).where(col(WebSession.id) == session_id))

    async def change_password(self, signed_in: SignedIn, current: str, new: str) -> bool:
        """Set a new password if ``current`` is right; other sessions of the user end."""
        async with self.db.session() as session:
            user = await session.get_one(User, signed_in.staff.id)
            if not await asyncio.to_thread(verify_password, user.password_hash, current):
                return False
            user.password_hash = hash_password(new)
            await session.execute(
                sa.delete(WebSession).where(
                    col(WebSession.user_id) == signed_in.staff.id,
                    col(WebSession.id) != signed_in.session_id,
                )
            )
        return True
