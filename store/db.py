"""Opens the database: SQLite (WAL, full fsync) by default, PostgreSQL by URL, the same code.

One ``Database`` per process. ORM sessions serve the inbox and API; the intake writer uses
``engine`` directly with Core statements, batched.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


class DatabaseUrlError(ValueError):
    """The database URL names a driver meldpunt does not support."""


SUPPORTED = {"sqlite+aiosqlite": "sqlite", "postgresql+asyncpg": "postgresql"}
CONNECT_TIMEOUT_SECONDS = 5.0


def normalise_url(url: str) -> str:
    """Accept the plain forms operators type (``sqlite:///x.db``, ``postgresql://…``)."""
    parsed = make_url(url)
    driver = parsed.drivername
    if driver in ("sqlite", "sqlite+pysqlite"):
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif driver in ("postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    if parsed.drivername not in SUPPORTED:
        raise DatabaseUrlError(
            f"unsupported database driver '{driver}': use sqlite:///path or postgresql://…"
        )
    return parsed.render_as_string(hide_password=False)


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    # Take over transaction control so every transaction starts with BEGIN IMMEDIATE: two
    # deferred transactions that both read then write would otherwise fail with SQLITE_BUSY
    # instead of waiting for each other.
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_on_begin(conn: sa.Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """The engine and session factory of one process."""

    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 10) -> None:
        """``pool_size``: on PostgreSQL, connections kept open; as many again are opened while
        the process is busy and closed after."""
        self.url = normalise_url(url)
        parsed = make_url(self.url)
        self.dialect = SUPPORTED[parsed.drivername]
        kwargs: dict[str, Any] = {"echo": echo}
        if self.dialect == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs["pool_size"] = pool_size
            kwargs["max_overflow"] = pool_size
            # A server restart leaves every pooled connection dead: each is tested as it is
            # taken, and replaced, so no request after the restart meets a dead one.
            kwargs["pool_pre_ping"] = True
            # While the server is down, fail in seconds (the webhook answers 503 and the
            # provider retries) instead of asyncpg's default minute per connection attempt.
            kwargs["connect_args"] = {"timeout": CONNECT_TIMEOUT_SECONDS}
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if self.dialect == "sqlite":
            sa.event.listen(self.engine.sync_engine, "connect", _sqlite_on_connect)
            sa.event.listen(self.engine.sync_engine, "begin", _sqlite_on_begin)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session whose transaction commits on success and rolls back on error."""
        async with self.sessions() as session, session.begin():
            yield session

    @property
    def where(self) -> str:
        """The database named for people: driver, host and name, never the password."""
        parsed = make_url(self.url)
        if self.dialect == "sqlite":
            return f"SQLite database {parsed.database}"
        port = f":{parsed.port}" if parsed.port else ""
        return f"PostgreSQL database '{parsed.database}' on {parsed.host}{port}"

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def close(self) -> None:
        await self.engine.dispose()
