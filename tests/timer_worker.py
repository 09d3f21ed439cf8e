"""A timer worker in a process of its own, for tests that race or kill several of them.

``python -m tests.timer_worker CONFIG [--stall-after N]`` loads the town's configuration (the
database from ``MELDPUNT_DATABASE_URL``), says ``ready`` and waits for a line on stdin, so all
processes of a test start together, then runs ``FollowUpWorker.run_once`` until no timer is
due any more. It reports on stdout, one JSON object a line: ``ready``, ``ran`` after every
round, ``done`` with how many timers this process ran. ``--stall-after N`` makes the process
hang inside the transaction of its (N+1)th timer, after the work was done and before the
commit, and say ``stalled``: the moment a test kills it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ingest.followup import PENDING, TIMERS, FollowUp, FollowUpWorker, TimerKind
from meldpunt.app import follow_up
from meldpunt.config import load_config
from meldpunt.logs import configure_logging
from store.db import Database

# Other processes may still hold due timers (or a killed one's rows are not yet released):
# wait this long for them before giving up.
PATIENCE_SECONDS = 30.0


def say(event: str, **data: Any) -> None:
    print(json.dumps({"event": event, "pid": os.getpid(), **data}), flush=True)


class StallingWorker(FollowUpWorker):
    """Does the work of ``stall_after`` timers, then hangs before committing the next one."""

    def __init__(self, engine: AsyncEngine, followup: FollowUp, stall_after: int) -> None:
        super().__init__(engine, followup)
        self._left = stall_after

    async def _handle(
        self,
        conn: AsyncConnection,
        kind: TimerKind,
        ticket: Mapping[str, Any],
        due_at: datetime,
        now: datetime,
    ) -> str:
        outcome = await super()._handle(conn, kind, ticket, due_at, now)
        if self._left == 0:
            say("stalled", ticket_id=ticket["id"], kind=kind.value)
            await asyncio.sleep(3600)
        self._left -= 1
        return outcome


async def due_left(engine: AsyncEngine) -> int:
    """Timers still pending and due, including those another process holds right now."""
    async with engine.connect() as conn:
        count = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(TIMERS)
            .where(TIMERS.c.state == PENDING, TIMERS.c.due_at <= datetime.now(UTC))
        )
    return int(count or 0)


async def main(config_file: str, stall_after: int | None) -> None:
    config = load_config(config_file)
    configure_logging("warning")
    db = Database(config.settings.database_url)
    followup = follow_up(config)
    worker = (
        FollowUpWorker(db.engine, followup)
        if stall_after is None
        else StallingWorker(db.engine, followup, stall_after)
    )
    try:
        await db.ping()
        say("ready")
        await asyncio.to_thread(sys.stdin.readline)
        started = time.monotonic()
        ran = 0
        while True:
            count = await worker.run_once()
            ran += count
            if count:
                say("ran", total=ran)
                continue
            if not await due_left(db.engine):
                break
            if time.monotonic() - started > PATIENCE_SECONDS:
                say("gave_up", total=ran, due=await due_left(db.engine))
                break
            await asyncio.sleep(0.02)
        say("done", ran=ran, seconds=round(time.monotonic() - started, 3))
    finally:
        await db.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("config")
    parser.add_argument("--stall-after", type=int, default=None)
    args = parser.parse_args()
    asyncio.run(main(args.config, args.stall_after))
