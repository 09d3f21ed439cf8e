"""Several meldpunt processes on one database: roles, leases, and real processes on PostgreSQL.

The first tests run in-process on SQLite and PostgreSQL: what each ``--role`` serves and runs,
and the lease's rules (taken when free or expired, renewed by its holder, given back). The last
two start real ``meldpunt serve`` processes on one PostgreSQL database, as compose.yaml does:

- two web processes get the same signed Twilio webhook and the same web form submission at the
  same moment, and two workers race to send the acknowledgements: one ticket per message, and
  the fake Twilio gets one request per acknowledgement;
- two workers share a Dovecot mailbox: one at a time holds its lease and reads it. Freeze the
  holder (SIGSTOP) and the other takes over once the lease expired; the first, woken up, lets go.
  SIGKILL the new holder and the first takes over at once (it sees the holder's process is gone).
  Every mail is in exactly once.

That each timer fires once with several processes is shown in ``tests/test_timers_processes.py``.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient

from meldpunt.app import RUNTIME, create_app
from meldpunt.cli import build_parser
from store.db import Database
from store.leases import Leases, hold
from store.models import Lease, Message, OutboxRow, Ticket, table_of
from tests.conftest import Clock, PostgresCluster, free_port
from tests.connectors.email.conftest import DovecotServer, dovecot, imap_env  # noqa: F401 - fixture
from tests.connectors.email.test_connector import mail
from tests.connectors.twilio.conftest import (  # noqa: F401 - fake_twilio is a fixture
    ACCOUNT_SID,
    AUTH_TOKEN,
    FakeTwilio,
    fake_twilio,
    fixture,
    signed,
)
from tests.service import sample_config, until

MESSAGES, OUTBOX, TICKETS = table_of(Message), table_of(OutboxRow), table_of(Ticket)
LEASES = table_of(Lease)

PUBLIC_URL = "https://meldpunt.wingene.example"
SMS_NUMBER = "+3250123456"
FAST = {
    "routing:\n  file:": "dispatch: {interval_seconds: 0.1, backoff_seconds: 0.2, "
    "backoff_max_seconds: 0.5}\nrouting:\n  file:",
    "rate_limit_per_minute: 10 ": "rate_limit_per_minute: 1000000 ",
}


# --- roles, in one process ----------------------------------------------------------------------


async def test_a_web_process_serves_http_and_runs_no_background_work(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, aiohttp_client: Any
) -> None:
    config = sample_config(tmp_path, database_url, monkeypatch)
    client: TestClient[Any, Any] = await aiohttp_client(create_app(config, role="web"))
    runtime = client.app[RUNTIME]
    assert (await client.get("/contact")).status == 200
    assert (await client.get("/api/v1/openapi.json")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200
    assert (await ready.json())["role"] == "web"
    # No dispatcher, no timers: a reply queued here is sent by a worker.
    assert runtime.dispatch_task is None and runtime.timer_task is None


async def test_a_worker_runs_the_background_work_and_serves_only_health(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, aiohttp_client: Any
) -> None:
    config = sample_config(tmp_path, database_url, monkeypatch)
    client: TestClient[Any, Any] = await aiohttp_client(create_app(config, role="worker"))
    runtime = client.app[RUNTIME]
    for path in ("/contact", "/api/v1/openapi.json", "/webhooks/twilio/messaging", "/welcome"):
        assert (await client.get(path)).status == 404, path
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/metrics")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200
    assert (await ready.json())["role"] == "worker"
    assert runtime.dispatch_task is not None and not runtime.dispatch_task.done()
    assert runtime.timer_task is not None and not runtime.timer_task.done()


def test_serve_takes_a_role_and_refuses_an_unknown_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert build_parser().parse_args(["serve"]).role == "all"
    assert build_parser().parse_args(["serve", "--role", "worker"]).role == "worker"
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["serve", "--role", "scheduler"])
    assert exit_.value.code == 2
    assert "invalid choice: 'scheduler'" in capsys.readouterr().err


# --- leases ------------------------------------------------------------------------------------

TTL = timedelta(seconds=30)


async def test_a_lease_has_one_holder_until_it_expires_or_is_given_back(
    database: Database, clock: Clock
) -> None:
    first = Leases(database.engine, "first", clock)
    second = Leases(database.engine, "second", clock)
    assert await first.acquire("imap:contactpunt", TTL)
    assert not await second.acquire("imap:contactpunt", TTL)
    # Another key is another lease.
    assert await second.acquire("imap:klachten", TTL)

    # The holder renews; it keeps the moment it took the lease.
    taken_at = clock.now
    clock.now += timedelta(seconds=20)
    assert await first.acquire("imap:contactpunt", TTL)
    [lease, _] = await first.all()
    assert (lease.key, lease.holder) == ("imap:contactpunt", "first")
    assert lease.acquired_at == taken_at
    assert lease.expires_at == clock.now + TTL

    # Not renewed in time (the holder died): the other takes it, and the first has lost it.
    clock.now += TTL + timedelta(seconds=1)
    assert await second.acquire("imap:contactpunt", TTL)
    assert not await first.acquire("imap:contactpunt", TTL)
    assert first.held == set()
    assert second.held == {"imap:contactpunt", "imap:klachten"}

    # Only the holder can give it back; then it is free at once.
    await first.release("imap:contactpunt")
    assert not await first.acquire("imap:contactpunt", TTL)
    await second.release("imap:contactpunt")
    assert await first.acquire("imap:contactpunt", TTL)


async def test_a_dead_holder_on_the_same_host_is_not_waited_for(database: Database) -> None:
    # A process of this host that has ended (its id is free): as after a SIGKILL and a restart.
    ended = await asyncio.create_subprocess_exec("true")
    await ended.wait()
    host = socket.gethostname()
    alive = Leases(database.engine)
    for holder, taken in (
        (f"{host}:{ended.pid}:12345:dead01", True),
        # Another host's process is none of our business: its lease is waited out.
        (f"elsewhere.example:{ended.pid}:12345:far001", False),
        # This process, under another holder: alive.
        (alive.holder, False),
        # This process id with another start: an earlier life of it (a restarted container).
        (f"{host}:{os.getpid()}:1:old001", True),
    ):
        async with database.engine.begin() as conn:
            await conn.execute(sa.delete(LEASES))
        assert await Leases(database.engine, holder).acquire("imap:contactpunt", TTL)
        assert await Leases(database.engine).acquire("imap:contactpunt", TTL) is taken, holder


@pytest.mark.parametrize("expired", [False, True], ids=["new", "expired"])
async def test_of_many_asking_at_once_one_gets_the_lease(
    database: Database, clock: Clock, expired: bool
) -> None:
    if expired:
        assert await Leases(database.engine, "gone", clock).acquire("imap:contactpunt", TTL)
        clock.now += TTL * 2
    askers = [Leases(database.engine, f"process-{n}", clock) for n in range(8)]
    got = await asyncio.gather(*(a.acquire("imap:contactpunt", TTL) for a in askers))
    assert sum(got) == 1
    [lease] = await askers[0].all()
    assert lease.holder == f"process-{got.index(True)}"


async def test_work_under_a_lease_runs_in_one_place_and_moves_when_it_is_lost(
    database: Database,
) -> None:
    ttl = timedelta(seconds=0.9)
    running: list[str] = []
    log: list[str] = []

    def work(name: str) -> Any:
        async def run() -> None:
            running.append(name)
            log.append(f"{name} started")
            try:
                await asyncio.Event().wait()
            finally:
                running.remove(name)
                log.append(f"{name} stopped")

        return run

    a = Leases(database.engine, "a")
    b = Leases(database.engine, "b")
    holding_a = asyncio.create_task(hold(a, "job", work("a"), ttl=ttl, retry_seconds=0.1))
    await until(lambda: _true(running == ["a"]), "a runs the work")
    holding_b = asyncio.create_task(hold(b, "job", work("b"), ttl=ttl, retry_seconds=0.1))
    try:
        # Several of a's renewals later, b is still waiting.
        await asyncio.sleep(1.5)
        assert running == ["a"]

        # The lease is taken from a (as after a pause longer than the lease): a stops at its
        # next renewal, b gets the lease once it is free again.
        async with database.engine.begin() as conn:
            await conn.execute(sa.text("UPDATE leases SET holder = 'someone else'"))
        await until(lambda: _true("a stopped" in log), "a stops its work", within=3)
        async with database.engine.begin() as conn:
            await conn.execute(sa.text("DELETE FROM leases"))
        await until(lambda: _true(len(running) == 1), "one of them runs the work again", within=3)
        assert len(running) == 1

        # Whoever holds it now gives it back when cancelled; the other takes over at once.
        holder_task, other = (holding_a, "b") if running == ["a"] else (holding_b, "a")
        holder_task.cancel()
        await asyncio.gather(holder_task, return_exceptions=True)
        await until(lambda: _true(running == [other]), "the other takes over", within=2)
    finally:
        for task in (holding_a, holding_b):
            task.cancel()
        await asyncio.gather(holding_a, holding_b, return_exceptions=True)
    assert running == []


async def _true(value: bool) -> bool:
    return value


async def _empty(held: Awaitable[list[str]]) -> bool:
    return not await held


# --- real processes on one PostgreSQL database ---------------------------------------------------


@pytest.fixture
def postgres_database(request: pytest.FixtureRequest) -> Iterator[str]:
    """A PostgreSQL database of this test's own, at head; skipped (failed in CI) without one."""
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    url = cluster.new_database(template=request.getfixturevalue("postgres_template"))
    yield url
    cluster.drop_database_later(url)


@dataclass
class Process:
    """One ``meldpunt serve`` process; its log goes to a file, shown when something fails."""

    role: str
    port: int
    proc: asyncio.subprocess.Process
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    async def get(self, http: aiohttp.ClientSession, path: str) -> tuple[int, str]:
        async with http.get(self.url + path) as response:
            return response.status, await response.text()

    async def held(self, http: aiohttp.ClientSession) -> list[str]:
        async with http.get(self.url + "/readyz") as response:
            leases: list[str] = (await response.json())["leases"]
            return leases


class Processes:
    """Starts ``meldpunt serve`` processes on one configuration and stops them all at the end."""

    def __init__(self, config_file: Path, folder: Path) -> None:
        self.config_file = config_file
        self.folder = folder
        self.running: list[Process] = []

    async def start(self, role: str, *extra: str, port: int | None = None) -> Process:
        port = port or free_port()
        log = self.folder / f"{role}-{port}.log"
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "meldpunt", "--config", str(self.config_file),
                "serve", "--port", str(port), "--role", role, *extra,
                env=dict(os.environ), stdout=out, stderr=out,
            )  # fmt: skip
        process = Process(role, port, proc, log)
        self.running.append(process)
        async with aiohttp.ClientSession() as http:

            async def ready() -> bool:
                if proc.returncode is not None:
                    raise AssertionError(f"{role} exited: {process.output()}")
                try:
                    return (await process.get(http, "/readyz"))[0] == 200
                except aiohttp.ClientConnectionError:
                    return False

            await until(ready, f"the {role} process is ready", within=30)
        return process

    async def stop(self) -> None:
        for process in self.running:
            if process.proc.returncode is None:
                process.proc.send_signal(signal.SIGCONT)  # a frozen one could not stop
                process.proc.terminate()
        for process in self.running:
            try:
                async with asyncio.timeout(15):
                    await process.proc.wait()
            except TimeoutError:
                process.proc.kill()
                await process.proc.wait()


@pytest.fixture
async def processes(tmp_path: Path) -> AsyncIterator[Processes]:
    started = Processes(tmp_path / "config" / "meldpunt.yaml", tmp_path)
    try:
        yield started
    finally:
        await started.stop()


async def count(db: Database, statement: sa.Select[Any]) -> int:
    async with db.engine.connect() as conn:
        return int(await conn.scalar(statement) or 0)


def started_at(metrics: str) -> str:
    """The ``process_start_time_seconds`` of the process that answered ``/metrics``."""
    [line] = [x for x in metrics.splitlines() if x.startswith("process_start_time_seconds ")]
    return line.split()[1]


@pytest.mark.postgres
async def test_web_processes_share_a_port_with_reuse_port_and_one_can_stop(
    tmp_path: Path, postgres_database: str, monkeypatch: pytest.MonkeyPatch, processes: Processes
) -> None:
    # Every form comes from 127.0.0.1 here; the per-address limit is not what is tested.
    limit = {"rate_limit_per_minute: 10 ": "rate_limit_per_minute: 1000 "}
    sample_config(tmp_path, postgres_database, monkeypatch, replace=limit)
    port = free_port()
    # One after the other: the processes are told apart by their start time (to 10 ms).
    first = await processes.start("web", "--reuse-port", port=port)
    await processes.start("web", "--reuse-port", port=port)
    # Without the flag a second process could not bind the port at all.
    refused = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "meldpunt", "--config", str(processes.config_file),
        "serve", "--port", str(port), "--role", "web",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(refused.communicate(), 30)
    assert refused.returncode != 0
    assert b"address already in use" in err.lower()

    async def post_forms(n: int) -> tuple[list[int], set[str]]:
        statuses, answered_by = [], set()
        # A new connection each time, as separate citizens' browsers make: the kernel spreads
        # connections, not requests, over the processes.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
            for i in range(n):
                async with http.post(
                    f"{first.url}/contact",
                    json={
                        "kind": "question",
                        "message": f"Vraag {i} over het containerpark.",
                        "email": f"burger{i}@example.be",
                    },
                ) as response:
                    statuses.append(response.status)
                async with http.get(f"{first.url}/metrics") as response:
                    answered_by.add(started_at(await response.text()))
        return statuses, answered_by

    statuses, answered_by = await post_forms(24)
    assert statuses == [201] * 24
    assert len(answered_by) == 2, "the kernel sent every connection to one process"

    # A rolling restart: one process stops, the other keeps taking every form.
    first.proc.terminate()
    assert await asyncio.wait_for(first.proc.wait(), 15) == 0
    statuses, answered_by = await post_forms(8)
    assert statuses == [201] * 8
    assert len(answered_by) == 1
    db = Database(postgres_database)
    try:
        assert await count(db, sa.select(sa.func.count()).select_from(TICKETS)) == 32
    finally:
        await db.close()


@pytest.mark.postgres
async def test_web_processes_make_one_ticket_of_a_duplicate_and_workers_send_each_once(
    tmp_path: Path,
    postgres_database: str,
    monkeypatch: pytest.MonkeyPatch,
    fake_twilio: FakeTwilio,  # noqa: F811 - the fixture imported above
    processes: Processes,
) -> None:
    for name, value in {
        "MELDPUNT_PUBLIC_URL": PUBLIC_URL,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_API_BASE": fake_twilio.base,
        "TWILIO_SMS_NUMBER": SMS_NUMBER,
    }.items():
        monkeypatch.setenv(name, value)
    sample_config(tmp_path, postgres_database, monkeypatch, replace=FAST)
    db = Database(postgres_database)
    webs = await asyncio.gather(processes.start("web"), processes.start("web"))
    workers = await asyncio.gather(processes.start("worker"), processes.start("worker"))
    texts = 40
    forms = 20
    try:
        async with aiohttp.ClientSession() as http:

            async def sms(n: int, web: Process) -> int:
                form = fixture(
                    "sms",
                    MessageSid=f"SMab{n:030x}",
                    SmsMessageSid=f"SMab{n:030x}",
                    SmsSid=f"SMab{n:030x}",
                    From=f"+3247{n:07d}",
                    Body=f"Bericht {n}: de straatlamp in de Molenstraat is stuk.",
                )
                body, headers = signed(f"{PUBLIC_URL}/webhooks/twilio/messaging", form)
                async with http.post(
                    f"{web.url}/webhooks/twilio/messaging", data=body, headers=headers
                ) as response:
                    return response.status

            async def report(n: int, web: Process) -> tuple[int, Any]:
                submission = {
                    "kind": "report",
                    "message": f"Melding {n}: sluikstort aan de glasbol.",
                    "email": f"burger{n}@example.be",
                    "submission_id": f"twin{n:08d}",
                }
                async with http.post(f"{web.url}/contact", json=submission) as response:
                    return response.status, await response.json()

            # Every message reaches both web processes at the same moment.
            statuses = await asyncio.gather(*(sms(n, web) for n in range(texts) for web in webs))
            answers = await asyncio.gather(*(report(n, web) for n in range(forms) for web in webs))
        assert set(statuses) == {200}, Counter(statuses)
        assert {status for status, _ in answers} <= {200, 201}, answers[:4]
        for n in range(forms):
            twins = [body for _, body in answers[2 * n : 2 * n + 2]]
            assert twins[0]["reference"] == twins[1]["reference"], twins
            assert sorted(body["duplicate"] for body in twins) == [False, True], twins

        # One ticket and one stored message per text and per form.
        assert await count(db, sa.select(sa.func.count()).select_from(TICKETS)) == texts + forms
        inbound = sa.select(MESSAGES.c.channel, sa.func.count()).where(MESSAGES.c.direction == "in")
        async with db.engine.connect() as conn:
            grouped = await conn.execute(inbound.group_by(MESSAGES.c.channel))
            per_channel: dict[str, int] = {row[0]: row[1] for row in grouped}
        assert per_channel == {"sms": texts, "webform": forms}

        # Two workers race over the acknowledgements: each is sent, once.
        sent = (
            sa.select(sa.func.count())
            .select_from(OUTBOX)
            .where(OUTBOX.c.channel == "sms", OUTBOX.c.state == "sent")
        )

        async def all_sent() -> bool:
            return await count(db, sent) == texts

        await until(all_sent, f"{texts} acknowledgements sent", within=30)
        await asyncio.sleep(0.5)  # a second send would come within the dispatch interval
        requests = Counter(call["To"] for call in fake_twilio.calls)
        assert set(requests) == {f"+3247{n:07d}" for n in range(texts)}
        twice = {to: n for to, n in requests.items() if n > 1}
        assert not twice, f"sent more than once: {twice}"
        assert await count(db, sa.select(sa.func.count()).select_from(OUTBOX).where(
            OUTBOX.c.channel == "sms"
        )) == texts  # fmt: skip
    except AssertionError:
        for process in [*webs, *workers]:
            print(f"--- {process.role} on {process.port}\n{process.output()}")
        raise
    finally:
        await db.close()


IMPORTED = re.compile(r'^meldpunt_imap_imported_total\{mailbox="contactpunt"\} (\S+)$', re.M)


async def imported(http: aiohttp.ClientSession, process: Process) -> int:
    """How many mails this process read from the mailbox, by its own metrics."""
    _, text = await process.get(http, "/metrics")
    found = IMPORTED.search(text)
    return int(float(found.group(1))) if found else 0


@pytest.mark.postgres
async def test_one_worker_at_a_time_reads_a_mailbox_and_another_takes_over(
    tmp_path: Path,
    postgres_database: str,
    monkeypatch: pytest.MonkeyPatch,
    dovecot: DovecotServer,  # noqa: F811 - the fixture imported above
    processes: Processes,
) -> None:
    account = dovecot.new_account()
    imap_env(monkeypatch, dovecot, account)
    sample_config(tmp_path, postgres_database, monkeypatch, replace=FAST)
    db = Database(postgres_database)
    first, second = workers = await asyncio.gather(
        processes.start("worker", "--lease-seconds", "3"),
        processes.start("worker", "--lease-seconds", "3"),
    )
    batch = 15

    def mails(start: int) -> list[bytes]:
        return [
            mail(
                f"Goedendag,\n\nMelding {n}: de haag belemmert het fietspad.\n\nAn",
                subject=f"Melding {n}",
                sender=f"Burger {n} <burger{n}@example.be>",
                message_id=make_msgid(f"m{n}", domain="mail.example.be"),
            )
            for n in range(start, start + batch)
        ]

    stored = sa.select(sa.func.count()).where(
        MESSAGES.c.direction == "in", MESSAGES.c.channel == "email"
    )
    sampled: list[tuple[list[str], ...]] = []
    frozen: set[int] = set()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:

            async def sample() -> None:
                # What each running worker says it holds, over and over: never both at once.
                while True:
                    awake = [
                        w for w in workers if w.proc.returncode is None and w.port not in frozen
                    ]
                    held = await asyncio.gather(
                        *(w.held(http) for w in awake), return_exceptions=True
                    )
                    sampled.append(tuple(h for h in held if isinstance(h, list)))
                    await asyncio.sleep(0.05)

            async def stored_are(n: int) -> bool:
                return await count(db, stored) == n

            async def lease_holder() -> str:
                async with db.engine.connect() as conn:
                    holder: str = (await conn.execute(sa.select(LEASES.c.holder))).scalar_one()
                return holder.split(":")[1]

            sampler = asyncio.create_task(sample())
            try:
                await asyncio.to_thread(dovecot.append, account, *mails(0))

                async def first_batch_marked() -> bool:
                    flags = await asyncio.to_thread(dovecot.flags, account)
                    return len(flags) == batch and all(
                        "$MeldpuntImported" in f for f in flags.values()
                    )

                await until(first_batch_marked, "the first mails are read and marked", 30)
                counts = [await imported(http, w) for w in workers]
                a, b = (first, second) if counts[0] else (second, first)
                assert sorted(counts) == [0, batch], counts
                assert await a.held(http) == ["imap:contactpunt"]
                assert await b.held(http) == []
                assert await lease_holder() == str(a.proc.pid)

                # A freezes (alive, but silent: a hung process, a host cut off). Its lease runs
                # out and B takes over the mailbox.
                frozen.add(a.port)
                a.proc.send_signal(signal.SIGSTOP)
                await asyncio.to_thread(dovecot.append, account, *mails(batch))
                await until(
                    lambda: stored_are(2 * batch), "B reads once A's lease expired", within=30
                )
                assert await lease_holder() == str(b.proc.pid)
                assert await imported(http, b) == batch

                # A wakes up, finds its lease gone at its next renewal and stops reading.
                a.proc.send_signal(signal.SIGCONT)
                await until(lambda: _empty(a.held(http)), "A lets go of the mailbox", within=10)
                frozen.discard(a.port)
                await asyncio.to_thread(dovecot.append, account, *mails(2 * batch))
                await until(lambda: stored_are(3 * batch), "B reads the next mails", within=30)
                assert await imported(http, a) == batch
                assert await imported(http, b) == 2 * batch

                # B dies without a goodbye: A sees on this host that B is gone and takes over
                # at once (from another host it would wait for the lease to expire, as B did).
                b.proc.send_signal(signal.SIGKILL)
                assert await b.proc.wait() == -signal.SIGKILL
                await asyncio.to_thread(dovecot.append, account, *mails(3 * batch))
                await until(lambda: stored_are(4 * batch), "A reads the last mails", within=30)
                assert await lease_holder() == str(a.proc.pid)
                assert await imported(http, a) >= 2 * batch
            finally:
                sampler.cancel()
                await asyncio.gather(sampler, return_exceptions=True)

        await asyncio.sleep(0.5)
        async with db.engine.connect() as conn:
            ids = [
                r.external_id
                for r in await conn.execute(
                    sa.select(MESSAGES.c.external_id).where(
                        MESSAGES.c.direction == "in", MESSAGES.c.channel == "email"
                    )
                )
            ]
            tickets = await conn.scalar(sa.select(sa.func.count()).select_from(TICKETS))
        assert len(ids) == len(set(ids)) == 4 * batch
        assert tickets == 4 * batch
        both = [s for s in sampled if sum(1 for held in s if held) > 1]
        assert not both, f"two workers held the mailbox at once: {both[:3]}"
        assert any(s for s in sampled), "the sampler saw nothing"
    except AssertionError:
        for process in workers:
            print(f"--- worker on {process.port}\n{process.output()}")
        raise
    finally:
        await db.close()
