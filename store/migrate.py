"""Brings a database's schema to the newest Alembic revision and tells whether it is there.

New revisions: ``python -m store.migrate revision -m "what changes"`` (see ``main``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from store.db import Database

SCRIPT_LOCATION = Path(__file__).with_name("migrations")

# Every meldpunt process that starts may try to upgrade; on PostgreSQL they queue on this
# transaction-level advisory lock, so the first one migrates and the others find nothing to do.
# (On SQLite, BEGIN IMMEDIATE already serialises them.) The key spells "meldpunt" in ASCII.
_UPGRADE_LOCK_KEY = 0x6D656C6470756E74


class MigrationError(RuntimeError):
    """The migration scripts or the database are not in a state an upgrade can work from."""


def _config(connection: sa.Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    # '%' is ConfigParser interpolation: doubled to reach Alembic as one.
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    config.attributes["connection"] = connection
    return config


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def head_revision() -> str:
    """The newest revision the installed code knows; raises if the history has several heads."""
    head = _scripts().get_current_head()
    if head is None:
        raise MigrationError(f"no migration scripts found in {SCRIPT_LOCATION}")
    return head


async def upgrade(database: Database) -> None:
    """Apply every missing revision, in one transaction, up to head."""
    async with database.engine.connect() as connection:
        await connection.run_sync(_upgrade)


def _upgrade(connection: sa.Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # Batch mode rebuilds a SQLite table by copy, drop and rename; with foreign keys
        # enforced, dropping the old table would fail or cascade into the rows pointing at it.
        # SQLite ignores this pragma inside a transaction, so it is set before BEGIN.
        _sqlite_pragma(connection, "foreign_keys=OFF")
    try:
        with connection.begin():
            if connection.dialect.name == "postgresql":
                connection.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _UPGRADE_LOCK_KEY}
                )
            command.upgrade(_config(connection), "head")
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise MigrationError(
                        f"the upgrade left rows with dangling foreign keys: {broken[:10]}"
                    )
    finally:
        if sqlite:
            _sqlite_pragma(connection, "foreign_keys=ON")


def _sqlite_pragma(connection: sa.Connection, pragma: str) -> None:
    # Straight on the driver connection: going through SQLAlchemy would open a transaction
    # first (store.db begins every one with BEGIN IMMEDIATE).
    cursor = connection.connection.cursor()
    try:
        cursor.execute(f"PRAGMA {pragma}")
    finally:
        cursor.close()


async def current_revision(database: Database) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    async with database.engine.connect() as connection:
        return await connection.run_sync(_current_revision)


def _current_revision(connection: sa.Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def check_schema_current(database: Database) -> bool:
    """Whether the database is at exactly the head this code expects (not older, not newer)."""
    async with database.engine.connect() as connection:
        heads = await connection.run_sync(_current_heads)
    return heads == set(_scripts().get_heads())


def _current_heads(connection: sa.Connection) -> set[str]:
    return set(MigrationContext.configure(connection).get_current_heads())


async def _revision(message: str, *, autogenerate: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="meldpunt-revision-") as tmp:
        database = Database(f"sqlite:///{Path(tmp) / 'head.db'}")
        try:
            await upgrade(database)
            async with database.engine.connect() as connection:
                await connection.run_sync(_write_revision, message, autogenerate)
        finally:
            await database.close()


def _write_revision(connection: sa.Connection, message: str, autogenerate: bool) -> None:
    head = _scripts().get_current_head()
    # Numbered revisions (0001, 0002, …) sort in the order they apply.
    rev_id = "0001" if head is None else f"{int(head) + 1:04d}" if head.isdigit() else None
    written = command.revision(
        _config(connection), message=message, autogenerate=autogenerate, rev_id=rev_id
    )
    if not written:
        print("no differences between store/models.py and the migrations: nothing written")
    else:
        print("review it by hand: SQLite cannot see every change (server defaults, CHECKs)")


def main(argv: Sequence[str] | None = None) -> int:
    """Developer helper: write a new revision from the difference between the models and head.

    ``python -m store.migrate revision -m "add due date to tickets"`` upgrades a temporary
    SQLite file to head, compares it with ``store/models.py`` and writes
    ``store/migrations/versions/NNNN_<slug>.py`` (numbered after the current head). Nothing is
    written when the models and the migrations agree. ``--empty`` writes a blank revision for
    hand-written data migrations. Read every generated revision before committing it, and run
    ``tests/store/test_migrations.py``, which upgrades real SQLite and PostgreSQL databases.
    """
    parser = argparse.ArgumentParser(prog="python -m store.migrate")
    commands = parser.add_subparsers(dest="command", required=True)
    revision = commands.add_parser("revision", help="write a new migration script")
    revision.add_argument("-m", "--message", required=True, help="what the revision changes")
    revision.add_argument(
        "--empty", action="store_true", help="write a blank revision instead of comparing"
    )
    args = parser.parse_args(argv)
    asyncio.run(_revision(args.message, autogenerate=not args.empty))
    return 0


if __name__ == "__main__":
    sys.exit(main())
