"""Migrations bring an empty SQLite file or PostgreSQL database to exactly the models' schema."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel, select

import store.migrate
from store.db import Database
from store.migrate import check_schema_current, current_revision, head_revision, upgrade
from store.models import Contact, is_search_object


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    """A database with no tables at all, on each backend."""
    if request.param == "sqlite":
        return sqlite_url
    postgres_url: Callable[[], str] = request.getfixturevalue("postgres_url")
    return postgres_url()


def schema_differences(connection: sa.Connection) -> list[object]:
    # As autogenerate compares (store/migrations/env.py): full-text search is not in the models.
    context = MigrationContext.configure(
        connection, opts={"include_name": lambda name, *_: not is_search_object(name)}
    )
    return list(compare_metadata(context, SQLModel.metadata))


async def differences(database: Database) -> list[object]:
    async with database.engine.connect() as connection:
        return await connection.run_sync(schema_differences)


def test_history_is_one_numbered_line() -> None:
    # python -m store.migrate revision numbers each revision after the head; two branches that
    # both add 0002 must be merged by renumbering, not left as two heads.
    revisions = list(ScriptDirectory(str(store.migrate.SCRIPT_LOCATION)).walk_revisions())
    ids = [revision.revision for revision in reversed(revisions)]
    assert ids == [f"{n:04d}" for n in range(1, len(ids) + 1)]
    assert head_revision() == ids[-1]


async def test_upgrade_from_empty_reaches_head(empty_url: str) -> None:
    database = Database(empty_url)
    try:
        assert await current_revision(database) is None
        assert not await check_schema_current(database)

        await upgrade(database)

        assert await current_revision(database) == head_revision()
        assert await check_schema_current(database)
        assert await differences(database) == []
    finally:
        await database.close()


async def test_every_model_table_exists(database: Database) -> None:
    def table_names(connection: sa.Connection) -> set[str]:
        return set(sa.inspect(connection).get_table_names())

    async with database.engine.connect() as connection:
        names = await connection.run_sync(table_names)
    assert set(SQLModel.metadata.tables) | {"alembic_version"} == {
        name for name in names if not is_search_object(name)
    }


async def test_upgrading_again_changes_nothing(database: Database) -> None:
    async with database.session() as session:
        session.add(Contact(display_name="An Peeters", created_at=datetime.now(UTC)))

    await upgrade(database)

    assert await current_revision(database) == head_revision()
    assert await differences(database) == []
    async with database.session() as session:
        names = (await session.execute(select(Contact.display_name))).scalars().all()
    assert names == ["An Peeters"]


@pytest.mark.postgres
async def test_concurrent_upgrades_wait_for_each_other(
    postgres_url: Callable[[], str],
) -> None:
    # Several web processes and workers start at once in production, each upgrading first.
    url = postgres_url()
    databases = [Database(url) for _ in range(3)]
    try:
        await asyncio.gather(*(upgrade(db) for db in databases))
        assert await current_revision(databases[0]) == head_revision()
        assert await differences(databases[0]) == []
    finally:
        for db in databases:
            await db.close()


async def test_sqlite_table_rebuild_keeps_the_rows_that_point_at_it(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Batch mode on SQLite copies a table, drops the old one and renames the copy: with foreign
    # keys enforced during the upgrade, dropping ``contacts`` fails on its identities.
    database = Database(sqlite_url)
    try:
        await upgrade(database)
        async with database.engine.begin() as connection:
            await connection.execute(
                sa.insert(SQLModel.metadata.tables["contacts"]).values(
                    id=1, created_at=datetime.now(UTC)
                )
            )
            await connection.execute(
                sa.insert(SQLModel.metadata.tables["contact_identities"]).values(
                    contact_id=1, kind="phone", value="+3250123456"
                )
            )

        scripts = tmp_path / "migrations"
        shutil.copytree(store.migrate.SCRIPT_LOCATION, scripts)
        (scripts / "versions" / "9999_rebuild_contacts.py").write_text(
            f"""
import sqlalchemy as sa
from alembic import op

revision = "9999"
down_revision = {head_revision()!r}
branch_labels = depends_on = None

def upgrade():
    with op.batch_alter_table("contacts", recreate="always") as batch:
        batch.add_column(sa.Column("note", sa.Text(), nullable=True))
"""
        )
        monkeypatch.setattr(store.migrate, "SCRIPT_LOCATION", scripts)
        await upgrade(database)

        assert await current_revision(database) == "9999"
        async with database.engine.connect() as connection:
            identities = await connection.exec_driver_sql("SELECT count(*) FROM contact_identities")
            foreign_keys = await connection.exec_driver_sql("PRAGMA foreign_keys")
            assert identities.scalar_one() == 1
            assert foreign_keys.scalar_one() == 1
    finally:
        await database.close()


async def test_sqlite_connections_are_durable_wal(sqlite_url: str) -> None:
    database = Database(sqlite_url)
    try:
        await upgrade(database)
        async with database.engine.connect() as connection:
            journal = await connection.exec_driver_sql("PRAGMA journal_mode")
            synchronous = await connection.exec_driver_sql("PRAGMA synchronous")
            # upgrade() switches enforcement off for the batch table rebuilds: it must be back.
            foreign_keys = await connection.exec_driver_sql("PRAGMA foreign_keys")
            assert journal.scalar_one() == "wal"
            assert synchronous.scalar_one() == 2  # FULL
            assert foreign_keys.scalar_one() == 1
    finally:
        await database.close()


async def test_foreign_keys_are_enforced(database: Database) -> None:
    with pytest.raises(sa.exc.IntegrityError):
        async with database.engine.begin() as connection:
            await connection.execute(
                sa.insert(SQLModel.metadata.tables["contact_identities"]).values(
                    contact_id=4242, kind="phone", value="+3250123456"
                )
            )


async def test_aware_datetimes_round_trip(database: Database) -> None:
    # A Brussels summer time, with microseconds: both the offset and the precision must survive.
    created = datetime(2026, 7, 16, 10, 12, 30, 123456, tzinfo=ZoneInfo("Europe/Brussels"))
    async with database.session() as session:
        contact = Contact(display_name="Jef", created_at=created)
        session.add(contact)
    async with database.session() as session:
        stored = await session.get_one(Contact, contact.id)

    assert stored.created_at == created
    assert stored.created_at.tzinfo is not None
    assert stored.created_at.utcoffset() == timedelta(0)
