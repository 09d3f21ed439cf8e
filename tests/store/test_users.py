"""Staff users and API tokens (``store/users.py``), as the CLI and the API's auth use them."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import col

from store.db import Database
from store.models import ApiToken, User, utcnow
from store.users import (
    UserError,
    create_token,
    create_user,
    hash_password,
    list_tokens,
    revoke_token,
    user_for_token,
    verify_password,
)


async def test_user_is_stored_case_folded_with_a_hashed_password(database: Database) -> None:
    async with database.session() as session:
        user = await create_user(
            session, " Anna.Peeters@Wingene.BE ", "agent", ["technical"], "lang-genoeg-wachtwoord"
        )
    assert user.email == "anna.peeters@wingene.be"
    assert user.password_hash is not None
    assert "lang-genoeg-wachtwoord" not in user.password_hash
    assert verify_password(user.password_hash, "lang-genoeg-wachtwoord")
    assert not verify_password(user.password_hash, "Lang-genoeg-wachtwoord")


def test_password_check_never_matches_a_missing_or_corrupt_hash() -> None:
    assert verify_password(hash_password("correct horse"), "correct horse")
    assert not verify_password(None, "")
    assert not verify_password("not-an-argon2-hash", "correct horse")


@pytest.mark.parametrize(
    ("email", "role", "departments", "password", "complaint"),
    [
        ("anna@town.test", "agent", [], None, "department"),
        ("anna@town.test", "boss", [], None, "role"),
        ("anna", "admin", [], None, "e-mail"),
        ("anna @town.test", "admin", [], None, "e-mail"),
        ("anna@town.test", "admin", [], "short", "password"),
        ("anna@town.test", "agent", ["nowhere"], None, "nowhere"),
    ],
)
async def test_invalid_users_are_refused_with_a_clear_reason(
    database: Database,
    email: str,
    role: str,
    departments: list[str],
    password: str | None,
    complaint: str,
) -> None:
    with pytest.raises(UserError, match=complaint):
        async with database.session() as session:
            await create_user(
                session, email, role, departments, password, valid_departments={"technical"}
            )


async def test_an_email_address_is_one_user_whatever_its_case(database: Database) -> None:
    async with database.session() as session:
        await create_user(session, "anna@town.test", "admin", [], None)
    with pytest.raises(UserError, match="already exists"):
        async with database.session() as session:
            await create_user(session, "ANNA@town.test", "operator", [], None)
    async with database.session() as session:
        count = await session.scalar(sa.select(sa.func.count()).select_from(User))
    assert count == 1


async def test_token_is_shown_once_and_only_its_hash_is_stored(database: Database) -> None:
    async with database.session() as session:
        user = await create_user(session, "bot@town.test", "operator", [], None)
        token = await create_token(session, "BOT@town.test", name="planning")
    assert token.startswith("mp_")
    assert len(token) > 40
    async with database.session() as session:
        [row] = (await session.execute(sa.select(ApiToken.__table__))).all()  # type: ignore[attr-defined]
        found = await user_for_token(session, token)
    assert token not in [str(value) for value in row]
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert found is not None
    assert found.id == user.id


async def test_tokens_of_unknown_or_deactivated_users_cannot_be_created(
    database: Database,
) -> None:
    with pytest.raises(UserError, match="no user"):
        async with database.session() as session:
            await create_token(session, "ghost@town.test")
    async with database.session() as session:
        user = await create_user(session, "gone@town.test", "admin", [], None)
        user.active = False
    with pytest.raises(UserError, match="deactivated"):
        async with database.session() as session:
            await create_token(session, "gone@town.test")


async def test_unknown_revoked_and_deactivated_tokens_find_nobody(database: Database) -> None:
    async with database.session() as session:
        await create_user(session, "a@town.test", "admin", [], None)
        await create_user(session, "b@town.test", "admin", [], None)
        by_text = await create_token(session, "a@town.test")
        by_id = await create_token(session, "a@town.test")
        inactive = await create_token(session, "b@town.test")
    async with database.session() as session:
        assert await user_for_token(session, "mp_guess") is None
        assert await user_for_token(session, "") is None
        assert await revoke_token(session, by_text)
        [_, second] = await list_tokens(session, "a@town.test")
        assert second.id is not None
        assert await revoke_token(session, second.id)
        assert not await revoke_token(session, second.id)
        await session.execute(
            sa.update(User).where(col(User.email) == "b@town.test").values(active=False)
        )
    async with database.session() as session:
        assert await user_for_token(session, by_text) is None
        assert await user_for_token(session, by_id) is None
        assert await user_for_token(session, inactive) is None


async def test_last_use_is_written_at_most_once_a_minute(database: Database) -> None:
    async with database.session() as session:
        await create_user(session, "a@town.test", "admin", [], None)
        token = await create_token(session, "a@town.test")
    async with database.session() as session:
        await user_for_token(session, token)
    async with database.session() as session:
        [first] = await list_tokens(session)
        assert first.last_used_at is not None
        await user_for_token(session, token)
    async with database.session() as session:
        [same] = await list_tokens(session)
        assert same.last_used_at == first.last_used_at
        # Pretend the last use was two minutes ago: the next use is recorded again.
        same.last_used_at = utcnow() - timedelta(minutes=2)
    async with database.session() as session:
        await user_for_token(session, token)
    async with database.session() as session:
        [later] = await list_tokens(session)
    assert later.last_used_at is not None
    assert later.last_used_at > first.last_used_at
