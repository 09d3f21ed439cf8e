"""Connector cursors in the database: small JSON bookmarks such as an IMAP mailbox's last UID.

A cursor is only ever an optimisation on top of deduplication: losing or rewinding one makes a
connector look at old input again, which ingest then recognises, never a lost message.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from store.models import ConnectorCursor, table_of

CURSORS = table_of(ConnectorCursor)


class DatabaseCursors:
    """The ``CursorStore`` the wiring gives connectors."""

    def __init__(self, engine: AsyncEngine, clock: Callable[[], datetime] | None = None) -> None:
        self._engine = engine
        self._clock = clock or (lambda: datetime.now(UTC))

    async def load(self, key: str) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            value = await conn.scalar(sa.select(CURSORS.c.value).where(CURSORS.c.key == key))
        return dict(value) if value is not None else None

    async def save(self, key: str, value: dict[str, Any]) -> None:
        now = self._clock()
        async with self._engine.begin() as conn:
            updated = await conn.execute(
                sa.update(CURSORS).where(CURSORS.c.key == key).values(value=value, updated_at=now)
            )
            if updated.rowcount == 0:
                await conn.execute(sa.insert(CURSORS).values(key=key, value=value, updated_at=now))
