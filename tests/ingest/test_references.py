"""Ticket references: unique and in order when several processes take in messages on one database.

On PostgreSQL they come from a sequence (migration 0009), so one process's open intake batch never
holds up another's; on SQLite, with one writer, from the ``counters`` row as before.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Literal

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

import store.migrate
from ingest.acknowledge import Acknowledgement, AckRequest, minimal_acknowledgement
from ingest.model import IntakeResult
from ingest.pipeline import Intake, IntakePolicy
from store.db import Database
from store.migrate import head_revision
from store.models import Ticket
from tests.conftest import PostgresCluster, rows
from tests.messages import inbound, sample_rules

# The revision before ticket references moved to a sequence on PostgreSQL.
BEFORE_SEQUENCE = "0008"


def _submit_all(intake: Intake, senders: list[str]) -> asyncio.Future[list[IntakeResult]]:
    # Submitted together, so the writer takes them as one batch.
    return asyncio.gather(*(intake.submit(inbound(email=sender)) for sender in senders))


def _numbers(results: list[IntakeResult]) -> list[int]:
    return [int(str(r.ticket_reference).removeprefix("1750-")) for r in results]


@pytest.fixture
def postgres_database(postgres_cluster: PostgresCluster, postgres_template: str) -> Iterator[str]:
    """A PostgreSQL database of this test's own, upgraded to head (SQLite has one writer)."""
    url = postgres_cluster.new_database(template=postgres_template)
    yield url
    postgres_cluster.drop_database_later(url)


@pytest.mark.postgres
async def test_an_open_intake_batch_does_not_hold_up_another_process(
    postgres_database: str,
) -> None:
    database_url = postgres_database
    # Process A takes its reference numbers, then stops inside its transaction (while it
    # builds the acknowledgements) until told to go on. Process B, with its own engine and
    # event loop as a second ``meldpunt serve`` would have, must get its batch committed
    # meanwhile: with a counter row locked until A commits, B would wait for A.
    rules = sample_rules()
    entered, release = threading.Event(), threading.Event()

    def held_acknowledgement(request: AckRequest) -> Acknowledgement:
        entered.set()
        release.wait(timeout=60)
        return minimal_acknowledgement(request)

    async def process_a() -> list[IntakeResult]:
        database = Database(database_url)
        policy = IntakePolicy(reference_prefix="1750", acknowledge=held_acknowledgement)
        intake = Intake(database.engine, lambda: rules, policy)
        await intake.start()
        try:
            return await _submit_all(intake, [f"a{n}@example.be" for n in range(3)])
        finally:
            await intake.stop()
            await database.close()

    a_done = asyncio.create_task(asyncio.to_thread(asyncio.run, process_a()))
    database = Database(database_url)
    intake = Intake(database.engine, lambda: rules, IntakePolicy(reference_prefix="1750"))
    await intake.start()
    try:
        assert await asyncio.to_thread(entered.wait, 30), "process A never reached its batch"
        b = await asyncio.wait_for(
            _submit_all(intake, [f"b{n}@example.be" for n in range(3)]), timeout=15
        )
        # B's tickets are stored while A's transaction is still open.
        stored = [t["reference"] for t in await rows(database, Ticket)]
        assert sorted(stored) == sorted(str(r.ticket_reference) for r in b)
        assert not a_done.done()
    finally:
        release.set()
        a = await a_done
        await intake.stop()

    try:
        # Each batch's tickets are numbered in the order they came, A's before B's (A took its
        # numbers first), and no number is given out twice.
        assert _numbers(a) == [1, 2, 3]
        assert _numbers(b) == [4, 5, 6]
        assert all(r.new_ticket for r in a + b)
        assert len(await rows(database, Ticket)) == 6
    finally:
        await database.close()


def _migrate(
    connection: sa.Connection, direction: Literal["upgrade", "downgrade"], to: str
) -> None:
    config = Config()
    config.set_main_option("script_location", str(store.migrate.SCRIPT_LOCATION))
    config.attributes["connection"] = connection
    with connection.begin():
        getattr(command, direction)(config, to)


async def _counter(database: Database) -> int | None:
    async with database.engine.connect() as connection:
        found = await connection.execute(
            sa.text("SELECT value FROM counters WHERE name = 'ticket_reference'")
        )
        value = found.scalar_one_or_none()
    return None if value is None else int(value)


async def _next_reference(database: Database, sender: str) -> str | None:
    rules = sample_rules()
    intake = Intake(database.engine, lambda: rules, IntakePolicy(reference_prefix="1750"))
    await intake.start()
    try:
        return (await intake.submit(inbound(email=sender))).ticket_reference
    finally:
        await intake.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    if request.param == "sqlite":
        return sqlite_url
    postgres_url: Callable[[], str] = request.getfixturevalue("postgres_url")
    return postgres_url()


async def test_numbering_goes_on_across_the_migration_and_back(empty_url: str) -> None:
    database = Database(empty_url)
    try:
        async with database.engine.connect() as connection:
            await connection.run_sync(_migrate, "upgrade", BEFORE_SEQUENCE)
        # A town that has been taking in messages for a while.
        async with database.engine.begin() as connection:
            await connection.execute(
                sa.text("INSERT INTO counters (name, value) VALUES ('ticket_reference', 41)")
            )

        await store.migrate.upgrade(database)
        assert await store.migrate.current_revision(database) == head_revision()
        assert await _next_reference(database, "an@example.be") == "1750-000042"

        async with database.engine.connect() as connection:
            await connection.run_sync(_migrate, "downgrade", BEFORE_SEQUENCE)
        # The counter knows every number given out, whichever held them.
        assert await _counter(database) == 42

        await store.migrate.upgrade(database)
        assert await _next_reference(database, "jan@example.be") == "1750-000043"
    finally:
        await database.close()
