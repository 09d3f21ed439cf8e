"""Batched inserts for the hot paths: ids are allocated up front, rows go in one executemany.

``INSERT … RETURNING`` in id order degrades to one statement per row on SQLite, which caps intake
in the hundreds per second. Allocating the ids first keeps a batch at one statement per table:
on PostgreSQL from the table's own sequence (so ORM inserts elsewhere stay consistent), on SQLite
as max(id)+1… while the transaction holds the write lock (every transaction there begins with
BEGIN IMMEDIATE, so no other writer can take the same ids).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection


async def allocate_ids(conn: AsyncConnection, table: sa.Table, count: int) -> list[int]:
    """``count`` fresh primary-key values for ``table``, valid inside this transaction."""
    if count <= 0:
        return []
    if conn.dialect.name == "postgresql":
        result = await conn.execute(
            sa.text(
                "SELECT nextval(pg_get_serial_sequence(:table, 'id')) "
                "FROM generate_series(1, :count)"
            ),
            {"table": table.name, "count": count},
        )
        return [int(v) for v in result.scalars()]
    highest = await conn.scalar(sa.select(sa.func.coalesce(sa.func.max(table.c.id), 0)))
    start = int(highest or 0) + 1
    return list(range(start, start + count))


async def insert_rows(
    conn: AsyncConnection, table: sa.Table, rows: Sequence[dict[str, Any]]
) -> list[int]:
    """Insert ``rows`` with allocated ids, in one statement; return the ids in row order."""
    ids = await allocate_ids(conn, table, len(rows))
    if rows:
        await conn.execute(
            sa.insert(table), [{**row, "id": i} for row, i in zip(rows, ids, strict=True)]
        )
    return ids
