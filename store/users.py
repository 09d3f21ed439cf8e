"""Staff users, their passwords and their API bearer tokens.

Passwords are hashed with argon2; a token is shown once and only its SHA-256 is stored, so a leaked
database does not leak working tokens.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from collections.abc import Collection, Iterable
from datetime import timedelta
from typing import Any, cast

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from store.models import ApiToken, User, utcnow

# Marks a string as a meldpunt token so secret scanners and people can recognise a leaked one.
TOKEN_PREFIX = "mp_"  # noqa: S105
MIN_PASSWORD_LENGTH = 10
# Writing last_used_at on every request would turn each API read into a write.
LAST_USED_GRANULARITY = timedelta(minutes=1)

_hasher = PasswordHasher()


class Role(enum.StrEnum):
    """What a staff member may see: admins and operators everything, agents their departments."""

    ADMIN = "admin"
    OPERATOR = "operator"
    AGENT = "agent"


class UserError(ValueError):
    """A user or token request that cannot be honoured; the message is fit to show an operator."""


# The shortest password a staff member may choose, on the command line and in the web inbox.
MIN_PASSWORD_LENGTH = 12


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True if ``password`` matches; a missing or corrupt hash never matches."""
    if not password_hash:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def hash_token(token: str) -> str:
    """The SHA-256 hex digest stored in place of a token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def normalise_email(email: str) -> str:
    return email.strip().casefold()


def _check_email(email: str) -> str:
    value = normalise_email(email)
    local, at, domain = value.partition("@")
    if not at or not local or "." not in domain or any(c.isspace() for c in value):
        raise UserError(f"'{email}' is not an e-mail address")
    return value


def _check_departments(
    role: Role, departments: Iterable[str], valid: Collection[str] | None
) -> list[str]:
    result = list(dict.fromkeys(d.strip() for d in departments if d.strip()))
    if role is Role.AGENT and not result:
        raise UserError("an agent needs at least one department")
    if valid is not None:
        unknown = [d for d in result if d not in valid]
        if unknown:
            raise UserError(
                f"unknown department(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}"
            )
    return result


async def user_by_email(session: AsyncSession, email: str) -> User | None:
    return (
        await session.scalars(sa.select(User).where(col(User.email) == normalise_email(email)))
    ).first()


async def create_user(
    session: AsyncSession,
    email: str,
    role: str,
    departments: Iterable[str],
    password: str | None,
    name: str | None = None,
    *,
    valid_departments: Collection[str] | None = None,
) -> User:
    """Add a staff user.

    Args:
        session: an open session; the caller's transaction commits the user.
        email: the login name, stored case-folded.
        role: ``admin``, ``operator`` or ``agent``.
        departments: department ids the user belongs to; an agent needs at least one.
        password: the login password, or None for an account that only uses API tokens.
        name: display name.
        valid_departments: if given, departments must be among these ids.

    Raises:
        UserError: invalid input or an e-mail address already in use.
    """
    address = _check_email(email)
    try:
        checked_role = Role(role.strip().lower())
    except ValueError:
        raise UserError(
            f"unknown role '{role}'; valid: {', '.join(r.value for r in Role)}"
        ) from None
    depts = _check_departments(checked_role, departments, valid_departments)
    if password is not None and len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if await user_by_email(session, address) is not None:
        raise UserError(f"a user with e-mail {address} already exists")
    user = User(
        email=address,
        name=name.strip() if name and name.strip() else None,
        role=checked_role.value,
        departments=depts,
        password_hash=hash_password(password) if password is not None else None,
        active=True,
        created_at=utcnow(),
    )
    session.add(user)
    try:
        await session.flush()
    except IntegrityError:
        # Another process added the same address between our check and our insert.
        raise UserError(f"a user with e-mail {address} already exists") from None
    return user


async def create_token(session: AsyncSession, user_email: str, name: str | None = None) -> str:
    """Create a bearer token for a user and return it; it cannot be shown again.

    Raises:
        UserError: no active user has that e-mail address.
    """
    user = await user_by_email(session, user_email)
    if user is None or user.id is None:
        raise UserError(f"no user with e-mail {normalise_email(user_email)}")
    if not user.active:
        raise UserError(f"user {user.email} is deactivated")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(
        ApiToken(
            user_id=user.id,
            token_hash=hash_token(token),
            name=name,
            created_at=utcnow(),
        )
    )
    await session.flush()
    return token


async def user_for_token(session: AsyncSession, token: str) -> User | None:
    """The active user a live token belongs to, or None.

    The lookup is by hash, so response time says nothing about how close a guess was.
    """
    if not token:
        return None
    result = await session.execute(
        sa.select(ApiToken, User)
        .join(User, col(User.id) == col(ApiToken.user_id))
        .where(
            col(ApiToken.token_hash) == hash_token(token),
            col(ApiToken.revoked).is_(False),
            col(User.active).is_(True),
        )
    )
    row = result.first()
    if row is None:
        return None
    api_token, user = row
    now = utcnow()
    if api_token.last_used_at is None or now - api_token.last_used_at >= LAST_USED_GRANULARITY:
        api_token.last_used_at = now
    return user


async def list_tokens(session: AsyncSession, user_email: str | None = None) -> list[ApiToken]:
    """Tokens (never their plaintext), oldest first, optionally of one user."""
    query = sa.select(ApiToken).order_by(col(ApiToken.id))
    if user_email is not None:
        query = query.join(User, col(User.id) == col(ApiToken.user_id)).where(
            col(User.email) == normalise_email(user_email)
        )
    return list((await session.scalars(query)).all())


async def revoke_token(session: AsyncSession, token: int | str) -> bool:
    """Revoke a token by its id (as listed by ``list_tokens``) or by its plaintext.

    Returns:
        True if a live token was revoked, False if none matched or it was already revoked.
    """
    where = (
        col(ApiToken.id) == token
        if isinstance(token, int)
        else col(ApiToken.token_hash) == hash_token(token)
    )
    result = await session.execute(
        sa.update(ApiToken).where(where, col(ApiToken.revoked).is_(False)).values(revoked=True)
    )
    return bool(cast("sa.CursorResult[Any]", result).rowcount)
