"""Timer workers in several real processes send each reminder and survey exactly once.

Hundreds of tickets go through the real intake and the staff inbox on a clock months in the
past, so that their deadline warnings, escalations, surveys and closes are all due now. Worker
processes (``tests/timer_worker.py``, the town's sample configuration, the real clock) then race
over them at the same moment, or one is killed with SIGKILL in the middle of a timer's
transaction and another takes over. What must hold afterwards is read from the database: every
timer done, and exactly one notice and one event per piece of work.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from inbox import tickets
from inbox.auth import Staff
from inbox.schemas import StatusRequest
from ingest.model import Kind, TicketStatus
from meldpunt.app import build_intake, follow_up
from meldpunt.config import LoadedConfig
from store.db import Database, normalise_url
from store.models import OutboxRow, Ticket, TicketEvent, Timer, table_of
from store.users import create_user
from tests.messages import inbound, sample_rules
from tests.service import sample_config

REPO = Path(__file__).resolve().parent.parent
TIMERS, TICKETS = table_of(Timer), table_of(Ticket)
OUTBOX, EVENTS = table_of(OutboxRow), table_of(TicketEvent)

# Half of the tickets are open complaints, each with two due timers, its first-answer warning
# and escalation (the complaint procedure has no resolution deadline); the other half resolved
# reports, each with its survey and its close due. The race runs 300 tickets (600 timers, one
# transaction each); the kill needs fewer.
RACE_TICKETS = 150
KILL_TICKETS = 50
# Long enough ago that a complaint's 45 days and a report's survey and close have all passed.
AGO = timedelta(days=100)
WAIT = 60.0

# What each timer must leave behind, once: notices in the outbox and events on the ticket.
NOTICES = {
    "first_answer_warning": "deadline_warning",
    "first_answer_due": "deadline_missed",
    "survey": "survey",
}
EVENTS_OF = {
    "first_answer_warning": "deadline_warning",
    "first_answer_due": "deadline_missed",
    "survey": "survey_sent",
    "close": "status_changed",
}
OUTCOMES = {
    "first_answer_warning": "warned klachten@wingene.example",
    "first_answer_due": "escalated to klachtencoordinator@wingene.example",
    "survey": "survey sent",
    "close": "closed",
}


@dataclass
class Seeded:
    """The due work, and where the rows written before the workers end."""

    each: int  # complaints, and as many reports
    timers: dict[int, tuple[int, str]]  # timer id -> (ticket id, kind)
    last_outbox: int
    last_event: int


async def seed_town(
    config: LoadedConfig, db: Database, monkeypatch: pytest.MonkeyPatch, each: int
) -> Seeded:
    """``each`` complaints left unanswered and as many reports resolved without an answer,
    all AGO in the past."""
    start = datetime.now(UTC) - AGO
    followup = follow_up(config)
    rules = sample_rules()
    intake = build_intake(config, db, lambda: rules, followup, lambda: start)
    await intake.start()
    try:
        results = await asyncio.gather(
            *(
                intake.submit(
                    inbound(
                        f"Klacht {n}: niemand heeft mijn melding over de stoep opgevolgd.",
                        kind=Kind.COMPLAINT,
                        subject="Geen antwoord",
                        email=f"klager{n}@example.be",
                        received_at=start,
                    )
                )
                for n in range(each)
            ),
            *(
                intake.submit(
                    inbound(
                        f"De straatlamp aan huisnummer {n} in de Kerkstraat brandt niet.",
                        email=f"burger{n}@example.be",
                        received_at=start,
                    )
                )
                for n in range(each)
            ),
        )
    finally:
        await intake.stop()
    references = [r.ticket_reference for r in results]
    assert len(set(references)) == 2 * each, "each message must open its own ticket"

    # Staff resolve the reports an hour later, without an answer (nothing is sent for that).
    monkeypatch.setattr(tickets, "utcnow", lambda: start + timedelta(hours=1))
    async with db.session() as session:
        user = await create_user(session, "els@wingene.example", "operator", [], None, "Els")
        await session.flush()
        staff = Staff.from_user(user)
    departments = {d.id: d.name for d in config.settings.departments}
    resolve = StatusRequest(status=TicketStatus.RESOLVED, reason="De lamp is vervangen.")
    for reference in references[each:]:
        assert reference is not None
        async with db.session() as session:
            await tickets.change_status(
                session, staff, departments, reference, resolve, followup=followup
            )

    async with db.engine.connect() as conn:
        due = (
            await conn.execute(
                sa.select(TIMERS.c.id, TIMERS.c.ticket_id, TIMERS.c.kind, TICKETS.c.kind)
                .join(TICKETS, TICKETS.c.id == TIMERS.c.ticket_id)
                .where(TIMERS.c.state == "pending")
            )
        ).all()
        last_outbox = await conn.scalar(sa.select(sa.func.max(OUTBOX.c.id))) or 0
        last_event = await conn.scalar(sa.select(sa.func.max(EVENTS.c.id))) or 0
    per_ticket_kind = Counter((ticket_kind, timer_kind) for _, _, timer_kind, ticket_kind in due)
    assert per_ticket_kind == {
        ("complaint", "first_answer_warning"): each,
        ("complaint", "first_answer_due"): each,
        ("report", "survey"): each,
        ("report", "close"): each,
    }
    return Seeded(each, {t.id: (t.ticket_id, t.kind) for t in due}, last_outbox, last_event)


@dataclass
class WorkerProcess:
    """One ``tests.timer_worker`` process and what it said on stdout."""

    proc: asyncio.subprocess.Process
    said: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    other: list[str] = field(default_factory=list)
    _readers: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def start(cls, config: LoadedConfig, *args: str) -> WorkerProcess:
        """Start a worker and return once it is connected and waits for ``go``."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.timer_worker", str(config.config_file), *args,
            cwd=REPO,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        worker = cls(proc)
        assert proc.stdout is not None and proc.stderr is not None
        worker._readers = [
            asyncio.create_task(worker._read(proc.stdout, parse=True)),
            asyncio.create_task(worker._read(proc.stderr, parse=False)),
        ]
        try:
            await worker.wait_for("ready")
        except BaseException:
            await worker.stop()
            raise
        return worker

    async def _read(self, stream: asyncio.StreamReader, *, parse: bool) -> None:
        async for raw in stream:
            line = raw.decode(errors="replace").rstrip()
            try:
                said = json.loads(line) if parse else None
            except ValueError:
                said = None
            if isinstance(said, dict) and "event" in said:
                await self.said.put(said)
            elif line:
                # Log lines (warnings, errors, a traceback): shown when an assertion fails.
                self.other.append(line)

    async def wait_for(self, event: str) -> dict[str, Any]:
        try:
            async with asyncio.timeout(WAIT):
                while True:
                    get = asyncio.ensure_future(self.said.get())
                    exited = asyncio.ensure_future(self.proc.wait())
                    await asyncio.wait({get, exited}, return_when=asyncio.FIRST_COMPLETED)
                    if get.done():
                        exited.cancel()
                        said = get.result()
                        if said["event"] == event:
                            return said
                        continue
                    get.cancel()
                    await asyncio.gather(*self._readers)
                    while not self.said.empty():
                        if (said := self.said.get_nowait())["event"] == event:
                            return said
                    raise AssertionError(f"worker exited before '{event}': {self.output}")
        except TimeoutError:
            message = f"no '{event}' from the worker in {WAIT} s: {self.output}"
            raise AssertionError(message) from None

    @property
    def output(self) -> str:
        return "\n".join(self.other[-40:])

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")

    async def finished(self) -> int:
        """How many timers this process ran, once it is done."""
        done = await self.wait_for("done")
        assert await self.proc.wait() == 0, self.output
        return int(done["ran"])

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()
        for reader in self._readers:
            await reader


async def stop_all(starting: list[asyncio.Task[WorkerProcess]]) -> None:
    """Kill whatever still runs, also a worker that never said ready."""
    for task in starting:
        if not task.done():
            task.cancel()
        try:
            worker = await task
        except (asyncio.CancelledError, AssertionError):
            continue
        await worker.stop()


def is_postgres(url: str) -> bool:
    return url.startswith("postgresql")


async def check_exactly_once(db: Database, seeded: Seeded) -> None:
    """Every due timer is done, with its work and its notice there once and nothing else."""
    async with db.engine.connect() as conn:
        timers = (
            await conn.execute(
                sa.select(TIMERS).where(TIMERS.c.id.in_(seeded.timers)).order_by(TIMERS.c.id)
            )
        ).all()
        notices = (
            await conn.execute(
                sa.select(OUTBOX.c.ticket_id, OUTBOX.c.purpose).where(
                    OUTBOX.c.id > seeded.last_outbox
                )
            )
        ).all()
        events = (
            await conn.execute(
                sa.select(EVENTS.c.ticket_id, EVENTS.c.type).where(EVENTS.c.id > seeded.last_event)
            )
        ).all()
        surveyed = await conn.scalar(
            sa.select(sa.func.count()).where(
                TICKETS.c.survey_state == "asked", TICKETS.c.status == "closed"
            )
        )
        escalated = await conn.scalar(
            sa.select(sa.func.count()).where(TICKETS.c.escalated_at.is_not(None))
        )

    not_done = [(t.id, t.kind, t.state, t.outcome) for t in timers if t.state != "done"]
    assert not not_done, f"{len(not_done)} timers did not run, e.g. {not_done[:3]}"
    assert all(t.done_at is not None for t in timers)
    wrong = [(t.kind, t.outcome) for t in timers if t.outcome != OUTCOMES[t.kind]]
    assert not wrong, f"{len(wrong)} timers did not do their work, e.g. {wrong[:3]}"

    expected_notices = Counter(
        (ticket, NOTICES[kind]) for ticket, kind in seeded.timers.values() if kind in NOTICES
    )
    got_notices = Counter((n.ticket_id, n.purpose) for n in notices)
    twice = {k: v for k, v in got_notices.items() if v > 1}
    assert not twice, f"{len(twice)} notices were queued more than once, e.g. {list(twice)[:3]}"
    assert got_notices == expected_notices

    expected_events = Counter((ticket, EVENTS_OF[kind]) for ticket, kind in seeded.timers.values())
    assert Counter((e.ticket_id, e.type) for e in events) == expected_events
    assert surveyed == seeded.each
    assert escalated == seeded.each


async def test_racing_worker_processes_run_each_timer_once(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PostgreSQL hands each process other rows (SKIP LOCKED); SQLite makes them take turns.
    processes = 3 if is_postgres(database_url) else 2
    config = sample_config(tmp_path, database_url, monkeypatch)
    db = Database(database_url)
    starting = [asyncio.create_task(WorkerProcess.start(config)) for _ in range(processes)]
    try:
        began = time.monotonic()
        # The workers load while the town is seeded; they wait for "go" to begin together.
        seeded = await seed_town(config, db, monkeypatch, RACE_TICKETS)
        seeding = time.monotonic() - began
        workers = await asyncio.gather(*starting)
        began = time.monotonic()
        for worker in workers:
            worker.go()
        ran = await asyncio.gather(*(w.finished() for w in workers))
        running = time.monotonic() - began
        print(
            f"\n{len(seeded.timers)} timers: seeded in {seeding:.1f} s, "
            f"run in {running:.1f} s by {processes} processes, {ran} each"
        )
        await check_exactly_once(db, seeded)
        # A timer run twice (even one that sent nothing) would be counted twice here.
        assert sum(ran) == len(seeded.timers)
        if is_postgres(database_url):
            # Row locks let the processes work side by side. SQLite's write lock is not fair: a
            # process that holds it may take every timer while the other waits its turn, which
            # is still a race for the same rows, so there only exactly-once is asserted.
            assert sum(1 for n in ran if n) > 1, f"one process did all the work: {ran}"
    finally:
        await stop_all(starting)
        await db.close()


async def test_a_killed_worker_leaves_its_timer_to_the_next_one(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = sample_config(tmp_path, database_url, monkeypatch)
    db = Database(database_url)
    # Reads the database while the stalled worker holds its transaction open: on SQLite
    # ``Database`` begins every transaction with BEGIN IMMEDIATE and would wait for it.
    reader = create_async_engine(normalise_url(database_url))
    # Two timers a ticket; the first process commits a third of them, then stalls on the next.
    before_kill = 2 * 2 * KILL_TICKETS // 3
    starting = [
        asyncio.create_task(WorkerProcess.start(config, "--stall-after", str(before_kill))),
        # The one that takes over loads meanwhile and waits.
        asyncio.create_task(WorkerProcess.start(config)),
    ]
    try:
        seeded = await seed_town(config, db, monkeypatch, KILL_TICKETS)
        first, second = await asyncio.gather(*starting)
        first.go()
        stalled = await first.wait_for("stalled")

        # Its work on the stalled timer is written but not committed: nobody sees it.
        async with reader.connect() as conn:
            done = await conn.scalar(
                sa.select(sa.func.count()).where(
                    TIMERS.c.id.in_(seeded.timers), TIMERS.c.state == "done"
                )
            )
            held = await conn.scalar(
                sa.select(TIMERS.c.state).where(
                    TIMERS.c.ticket_id == stalled["ticket_id"], TIMERS.c.kind == stalled["kind"]
                )
            )
        assert done == before_kill
        assert held == "pending"

        first.proc.send_signal(signal.SIGKILL)
        assert await first.proc.wait() == -signal.SIGKILL

        second.go()
        # Everything the first did not commit, the stalled timer included, and nothing more.
        assert await second.finished() == len(seeded.timers) - before_kill
        await check_exactly_once(db, seeded)
        async with db.engine.connect() as conn:
            outcome = await conn.scalar(
                sa.select(TIMERS.c.outcome).where(
                    TIMERS.c.ticket_id == stalled["ticket_id"], TIMERS.c.kind == stalled["kind"]
                )
            )
        assert outcome == OUTCOMES[stalled["kind"]]
    finally:
        await stop_all(starting)
        await reader.dispose()
        await db.close()
