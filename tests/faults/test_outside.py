"""Faults from outside a real ``meldpunt serve``: what it leans on fails a while, then comes back.

- PostgreSQL restarted under load: webhooks answer 503 at once instead of hanging or lying,
  ``/readyz`` says the database is the problem, and afterwards everything catches up without
  restarting meldpunt.
- A provider answering 500s, or not at all: answers are retried with back-off and go out once
  each; a send that hung past its time-out is shown to staff as "delivery uncertain".
- The IMAP server dropping the connection and restarting: the mailbox reader reconnects by itself
  and every mail becomes one ticket.
- The attachment storage full: no text is lost, nothing is acknowledged that was not kept, and
  what waited is stored once there is room again.

Each test starts its own service (SQLite, except the PostgreSQL one) with short intervals.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import json
import os
import re
import shlex
import signal
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa

from store.db import Database
from store.migrate import upgrade
from store.models import AttachmentRow, JournalEntry, Message, OutboxRow, Ticket, table_of
from tests.conftest import (
    PostgresCluster,
    free_port,
    running_postgres,
    unavailable,
)
from tests.connectors.email.conftest import Account, DovecotServer, imap_env
from tests.connectors.messenger.conftest import FakeGraph, graph_error
from tests.connectors.messenger.conftest import message as messenger_message
from tests.connectors.messenger.conftest import signed as meta_signed
from tests.connectors.messenger.test_connector import messenger_env
from tests.connectors.telegram.conftest import SECRET, FakeTelegram, telegram_env, text_update
from tests.connectors.twilio.conftest import FakeTwilio, fixture, signed
from tests.connectors.twilio.test_connector import twilio_env
from tests.faults.test_sigkill import PUBLIC_URL, Service
from tests.service import ServiceProbe, sample_config, until

MESSAGES, OUTBOX, TICKETS = table_of(Message), table_of(OutboxRow), table_of(Ticket)
JOURNAL = table_of(JournalEntry)
TAG = re.compile(r"outside-([a-z]+)-(\d{4})")
# Every citizen here writes from 127.0.0.1: lift the limits per client address.
LIMITS = {
    "log_level: info": "log_level: warning",
    "rate_limit_per_minute: 10 ": "rate_limit_per_minute: 1000000 ",
}
# A webhook refused while something is down must be refused quickly: providers time out too.
QUICK_REFUSAL_SECONDS = 5.0


def tag(channel: str, n: int) -> str:
    return f"outside-{channel}-{n:04d}"


def text_of(channel: str, n: int) -> str:
    return f"Melding {tag(channel, n)}: het voetpad aan huisnummer {n} ligt open."


def dispatch(**values: float) -> dict[str, str]:
    """The sample configuration's replacement that sets the dispatcher's timings."""
    settings = ", ".join(f"{key}: {value}" for key, value in values.items())
    return {"routing:\n  file:": f"dispatch: {{{settings}}}\nrouting:\n  file:"}


@dataclass
class Town(ServiceProbe):
    """A running ``meldpunt serve``, its database, and citizens and staff talking to it."""

    service: Service
    database: Database
    base: str
    http: aiohttp.ClientSession

    @property
    def db(self) -> Database:
        return self.database

    async def ready(self) -> tuple[int, dict[str, Any]]:
        async with self.http.get(f"{self.base}/readyz") as answer:
            body: dict[str, Any] = await answer.json()
            return answer.status, body

    async def post(self, path: str, body: bytes | aiohttp.FormData, headers: Any = None) -> int:
        """The status a client got, or 0 when the connection failed."""
        try:
            async with self.http.post(self.base + path, data=body, headers=headers) as answer:
                await answer.read()
                return answer.status
        except (aiohttp.ClientError, TimeoutError):
            return 0

    async def timed(self, request: Awaitable[int]) -> tuple[int, float]:
        began = time.monotonic()
        status = await request
        return status, time.monotonic() - began

    async def webform(self, n: int) -> int:
        body = {
            "kind": "report",
            "message": text_of("webform", n),
            "email": f"formulier{n}@example.be",
            "submission_id": f"outside{n:08d}",
        }
        headers = {"Content-Type": "application/json"}
        return await self.post("/contact", json.dumps(body).encode(), headers)

    async def sms(self, n: int) -> int:
        sid = f"SMout{n:029x}"
        form = fixture("sms", MessageSid=sid, SmsMessageSid=sid, SmsSid=sid)
        form.update(Body=text_of("sms", n), From=f"+3247{n:07d}")
        path = "/webhooks/twilio/messaging"
        body, headers = signed(PUBLIC_URL + path, form)
        return await self.post(path, body, headers)

    async def telegram(self, n: int) -> int:
        update = text_update(800_000_000 + n, 1, text_of("telegram", n))
        update["message"]["chat"]["id"] = update["message"]["from"]["id"] = chat_of(n)
        headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": SECRET}
        return await self.post("/webhooks/telegram", json.dumps(update).encode(), headers)

    async def messenger(self, n: int) -> int:
        payload = messenger_message(text_of("messenger", n), f"m_outside{n:06d}", psid_of(n))
        body = json.dumps(payload).encode()
        return await self.post("/webhooks/facebook", body, meta_signed(body))

    async def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {await self.staff_token()}"}
        url = f"{self.base}/api/v1{path}"
        async with self.http.request(method, url, json=body, headers=headers) as answer:
            return answer.status, await answer.json()

    async def stored(self) -> Counter[tuple[str, int]]:
        """How often each tagged citizen message is stored on a ticket."""
        async with self.db.engine.connect() as conn:
            found = await conn.execute(
                sa.select(MESSAGES.c.text, MESSAGES.c.ticket_id).where(MESSAGES.c.direction == "in")
            )
            stored: Counter[tuple[str, int]] = Counter()
            for text, ticket_id in found.all():
                if (match := TAG.search(text)) and ticket_id is not None:
                    stored[(match.group(1), int(match.group(2)))] += 1
            return stored

    async def ticket_of(self, channel: str, n: int) -> str:
        async with self.db.engine.connect() as conn:
            reference = await conn.scalar(
                sa.select(TICKETS.c.reference)
                .join(MESSAGES, MESSAGES.c.ticket_id == TICKETS.c.id)
                .where(MESSAGES.c.text == text_of(channel, n))
            )
        assert reference is not None, f"no ticket for {tag(channel, n)}"
        return str(reference)

    async def outbox(self, *where: sa.ColumnElement[bool]) -> list[sa.RowMapping]:
        return await self.rows(OutboxRow, *where)

    async def quarantined(self) -> list[sa.RowMapping]:
        return await self.rows(JournalEntry, JOURNAL.c.state == "quarantined")


def chat_of(n: int) -> int:
    return 600_000_000 + n


def psid_of(n: int) -> str:
    return f"88{n:014d}"


@contextlib.asynccontextmanager
async def serve(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, **timings: float
) -> AsyncIterator[Town]:
    """``meldpunt serve`` on the sample configuration with the dispatcher's ``timings``."""
    config = sample_config(
        tmp_path, database_url, monkeypatch, replace=LIMITS | dispatch(**timings)
    )
    port = free_port()
    service = Service(config.config_file, port, dict(os.environ), tmp_path / "serve.log")
    database = Database(database_url)
    try:
        await service.start()
        timeout = aiohttp.ClientTimeout(total=20)
        # unsafe: the web form's CSRF cookie comes from 127.0.0.1, an address, not a name.
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(timeout=timeout, cookie_jar=jar) as http:
            yield Town(service, database, f"http://127.0.0.1:{port}", http)
    finally:
        await service.stop()
        await database.close()


def sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'meldpunt.db'}"


# --- PostgreSQL restarted ----------------------------------------------------------------------


@pytest.fixture
def own_postgres() -> Iterator[PostgresCluster]:
    """A PostgreSQL server of this test's own: it is stopped and started again, which the
    session's server, shared by every other test, must never be."""
    yield from running_postgres()


def pg_ctl(cluster: PostgresCluster, *args: str) -> None:
    """Run pg_ctl on ``cluster`` as the server's owner (initdb and the server refuse root)."""
    owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    done = subprocess.run(
        [*owner, str(cluster.bindir / "pg_ctl"), "-D", str(cluster.data), *args],
        cwd=cluster.root, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"pg_ctl {' '.join(args)}: {done.stdout}{done.stderr}"


def restart_postgres(cluster: PostgresCluster) -> None:
    """Start the stopped server again on its port, with the options PostgresCluster uses."""
    options = (
        f"-c listen_addresses=127.0.0.1 -p {cluster.port} -k {shlex.quote(str(cluster.root))} "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )
    pg_ctl(cluster, "-l", str(cluster.log), "-w", "-t", "30", "-o", options, "start")


@pytest.mark.postgres
async def test_postgresql_restarted_while_citizens_write(
    own_postgres: PostgresCluster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fake_twilio: FakeTwilio,
) -> None:
    url = own_postgres.new_database()
    migrating = Database(url)
    try:
        await upgrade(migrating)
    finally:
        await migrating.close()
    twilio_env(monkeypatch, fake_twilio)
    # A failed send waits 4 s for its retry: long enough that the staff answer below is not
    # in flight when the database goes (a send cut off so would rightly turn "uncertain").
    async with serve(
        tmp_path, url, monkeypatch, interval_seconds=0.1, backoff_seconds=4,
        backoff_max_seconds=4, send_timeout_seconds=5, max_attempts=20,
    ) as town:  # fmt: skip
        sent = {("webform", n): await town.webform(n) for n in range(6)}
        sent |= {("sms", n): await town.sms(n) for n in range(6)}
        assert all(200 <= s < 300 for s in sent.values()), sent

        async def sms_settled() -> bool:
            unsent = await town.outbox(
                OUTBOX.c.channel == "sms", OUTBOX.c.state.in_(("pending", "sending"))
            )
            return not unsent

        await until(sms_settled, "the SMS acknowledgements sent")
        # A staff answer that Twilio refuses once (500): it waits for its retry in the outbox.
        reference = await town.ticket_of("sms", 0)
        fake_twilio.fail_next = 1
        answer = "Dag, de technische dienst komt het voetpad morgen herstellen."
        status, body = await town.api("POST", f"/tickets/{reference}/replies", {"text": answer})
        assert status == 201, body

        async def waiting_for_retry() -> bool:
            rows = await town.outbox(OUTBOX.c.purpose == "reply")
            return bool(rows) and rows[0]["state"] == "pending" and rows[0]["attempts"] == 1

        await until(waiting_for_retry, "the answer's first attempt refused", 10)

        await asyncio.to_thread(pg_ctl, own_postgres, "-m", "fast", "-w", "stop")
        async with town.http.get(f"{town.base}/healthz") as health:
            assert health.status == 200
        status, ready = await town.ready()
        assert status == 503, ready
        assert ready["checks"]["database"].startswith("unreachable"), ready
        # Citizens keep writing: each is refused at once (503), none is told "stored".
        refused = await asyncio.gather(
            *(town.timed(town.webform(n)) for n in range(6, 16)),
            *(town.timed(town.sms(n)) for n in range(6, 16)),
        )
        slow = [seconds for _, seconds in refused if seconds > QUICK_REFUSAL_SECONDS]
        assert not slow, f"refusals took {slow} s"
        assert {status for status, _ in refused} == {503}, refused
        status, ready = await town.ready()
        assert status == 503 and ready["checks"]["database"] != "ok", ready

        await asyncio.to_thread(restart_postgres, own_postgres)
        # The test's own connections died too: start afresh, so what follows tests the service.
        await town.database.engine.dispose()

        async def ready_again() -> bool:
            return (await town.ready())[0] == 200

        await until(ready_again, "/readyz 200 again after the restart", 20)
        # The refused messages sent again, new ones, and the first ones once more (a provider
        # that missed the answer): each is taken at the first try, none meets a dead connection.
        again = await asyncio.gather(
            *(town.webform(n) for n in range(22)), *(town.sms(n) for n in range(22))
        )
        assert all(200 <= s < 300 for s in again), again

        async def answered() -> bool:
            return any(call["Body"] == answer for call in fake_twilio.sent())

        await until(answered, "the staff answer delivered after the outage", 15)
        await until(sms_settled, "every SMS acknowledgement sent", 15)

        stored = await town.stored()
        expected = {(channel, n) for channel in ("webform", "sms") for n in range(22)}
        assert set(stored) == expected, sorted(set(stored) ^ expected)
        assert set(stored.values()) == {1}, [k for k, v in stored.items() if v != 1]
        assert not await town.quarantined()
        # Nothing went out twice: each (number, text) reached the fake once; every SMS row sent.
        sends = Counter((c["To"], c["Body"]) for c in fake_twilio.sent())
        assert max(sends.values()) == 1, [k for k, v in sends.items() if v > 1]
        rows = await town.outbox(OUTBOX.c.channel == "sms")
        assert {r["state"] for r in rows} == {"sent"}, [(r["state"], r["reason"]) for r in rows]
        assert [c["Body"] for c in fake_twilio.sent()].count(answer) == 1


# --- a provider answering 500s, then not at all ------------------------------------------------


async def test_provider_errors_are_retried_and_a_hung_send_is_shown_uncertain(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fake_telegram: FakeTelegram,
    fake_graph: FakeGraph,
) -> None:
    telegram_env(monkeypatch, fake_telegram)
    messenger_env(monkeypatch, fake_graph)
    async with serve(
        tmp_path, sqlite(tmp_path), monkeypatch, interval_seconds=0.05, backoff_seconds=0.2,
        backoff_max_seconds=0.4, send_timeout_seconds=2, max_attempts=100,
    ) as town:  # fmt: skip
        # Both providers fail every send for a while: 500 and their own error bodies.
        fake_telegram.fail_next = 1_000_000
        fake_graph.fail = [graph_error(2, "Service temporarily unavailable", status=500)] * 10_000
        numbers = range(8)
        taken = await asyncio.gather(
            *(town.telegram(n) for n in numbers), *(town.messenger(n) for n in numbers)
        )
        assert all(200 <= s < 300 for s in taken), taken

        async def retried() -> bool:
            rows = await town.outbox()
            return len(rows) == 2 * len(numbers) and all(r["attempts"] >= 2 for r in rows)

        await until(retried, "every acknowledgement tried at least twice", 15)
        await asyncio.sleep(2)  # the providers stay down a while
        # Meanwhile the service is ready and takes new messages.
        status, ready = await town.ready()
        assert status == 200, ready
        assert await town.telegram(50) == 200 and await town.messenger(50) == 200
        rows = await town.outbox()
        assert {r["state"] for r in rows} <= {"pending", "sending"}, rows
        # Back-off: in those 2.5 s or so a row was tried again after 0.2 s, then every 0.4 s
        # (about 8 times), not at every 0.05 s pass of the dispatcher (about 50 times).
        tries = len(fake_telegram.calls) + len(fake_graph.calls)
        assert all(r["attempts"] <= 12 for r in rows), [r["attempts"] for r in rows]
        waiting = [str(r["reason"]) for r in rows if r["state"] == "pending" and r["attempts"]]
        assert waiting and all("retrying at" in reason for reason in waiting), waiting

        fake_telegram.fail_next = 0
        fake_graph.fail.clear()

        async def all_sent() -> bool:
            rows = await town.outbox()
            return len(rows) == 2 * (len(numbers) + 1) and {r["state"] for r in rows} == {"sent"}

        await until(all_sent, "every acknowledgement sent after the providers recovered", 15)
        assert tries < len(fake_telegram.calls) + len(fake_graph.calls)
        # Each citizen got exactly one acknowledgement.
        telegram_chats = Counter(int(c.params["chat_id"]) for c in fake_telegram.sent())
        assert telegram_chats == Counter({chat_of(n): 1 for n in [*numbers, 50]})
        messenger_users = Counter(str(c.body["recipient"]["id"]) for c in fake_graph.sent())
        assert messenger_users == Counter({psid_of(n): 1 for n in [*numbers, 50]})

        # Telegram takes the next send and never answers: after the send time-out it is
        # "delivery uncertain" for staff, and not sent blindly again.
        fake_telegram.hang_next = 1
        assert await town.telegram(60) == 200
        reference = await town.ticket_of("telegram", 60)

        async def uncertain() -> bool:
            rows = await town.outbox(OUTBOX.c.recipient == str(chat_of(60)))
            return bool(rows) and rows[0]["state"] == "uncertain"

        await until(uncertain, "the hung send marked uncertain", 10)
        status, page = await town.api("GET", "/outbox?state=uncertain")
        assert status == 200, page
        [item] = page["items"]
        assert "may or may not have arrived" in item["reason"], item
        status, ticket = await town.api("GET", f"/tickets/{reference}")
        assert status == 200, ticket
        outbound = [m for m in ticket["messages"] if m["direction"] == "out"]
        assert [m["outbox"]["state"] for m in outbound] == ["uncertain"], outbound
        assert [m["delivery_status"] for m in outbound] == ["uncertain"], outbound
        status, ready = await town.ready()
        assert status == 200, ready
        await asyncio.sleep(1)  # several dispatcher passes: none may call Telegram again
        to_chat = [c for c in fake_telegram.calls if c.params.get("chat_id") == str(chat_of(60))]
        assert len(to_chat) == 1, to_chat


# --- IMAP dropping the connection -------------------------------------------------------------

TOWN_ADDRESS = "contactpunt@wingene.example"
MAILBOX_CHECK = "mailbox contactpunt"


def mail(n: int, attachment: bytes | None = None) -> bytes:
    message = EmailMessage()
    message["From"] = f"Burger {n} <mailer{n}@example.be>"
    message["To"] = TOWN_ADDRESS
    message["Subject"] = f"Melding {n}"
    message["Message-ID"] = make_msgid(f"outside{n}", "example.be")
    message.set_content(text_of("email", n) + "\n")
    if attachment is not None:
        message.add_attachment(
            attachment, maintype="application", subtype="pdf", filename=f"plan{n}.pdf"
        )
    return bytes(message)


async def deliver_mail(dovecot: DovecotServer, account: Account, messages: list[bytes]) -> None:
    """An MTA handing mail to the server, one at a time, trying again while it is away."""
    for raw in messages:
        for _attempt in range(100):
            try:
                await asyncio.to_thread(dovecot.append, account, raw)
                break
            except Exception:  # refused, or cut off by the server going away: try again
                await asyncio.sleep(0.2)
        else:
            raise AssertionError("the IMAP server did not take mail again")
        await asyncio.sleep(0.05)


async def all_marked(dovecot: DovecotServer, account: Account) -> bool:
    """Whether every mail in the inbox is marked as imported (only done once it is stored)."""
    flags = await asyncio.to_thread(dovecot.flags, account)
    return all("$MeldpuntImported" in f for f in flags.values())


def kill_imap_sessions(dovecot: DovecotServer) -> int:
    """SIGKILL the server's imap processes (each holds one client's session): every logged-in
    client's connection drops, as when a server process crashes. Returns how many."""
    group = int((dovecot.root / "pgid").read_text())
    killed = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            comm = stat.read_text().split("(", 1)[1].rsplit(")", 1)[0]
        except (OSError, IndexError):
            continue  # gone meanwhile
        if comm == "imap" and int(fields[2]) == group:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(stat.parent.name), signal.SIGKILL)
                killed += 1
    return killed


async def test_imap_connection_dropped_and_server_restarted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, own_dovecot: DovecotServer
) -> None:
    account = own_dovecot.new_account()
    imap_env(monkeypatch, own_dovecot, account)
    async with serve(tmp_path, sqlite(tmp_path), monkeypatch, interval_seconds=0.2) as town:
        await deliver_mail(own_dovecot, account, [mail(n) for n in range(5)])

        async def imported(count: int) -> bool:
            return sum(1 for channel, _ in await town.stored() if channel == "email") == count

        await until(lambda: imported(5), "the first mails imported", 15)
        # Mail keeps coming while the reader's session is killed on the server.
        arriving = asyncio.create_task(
            deliver_mail(own_dovecot, account, [mail(n) for n in range(5, 15)])
        )
        await asyncio.sleep(0.2)
        assert await asyncio.to_thread(kill_imap_sessions, own_dovecot) >= 1
        await arriving

        # The server goes away for a while: meldpunt stays ready and names the mailbox's
        # trouble among the checks.
        await asyncio.to_thread(own_dovecot.stop)
        arriving = asyncio.create_task(
            deliver_mail(own_dovecot, account, [mail(n) for n in range(15, 25)])
        )
        seen = ["(not asked yet)"]
        deadline = time.monotonic() + 8
        while "imap connection failed" not in seen[-1] and time.monotonic() < deadline:
            status, ready = await town.ready()
            assert status == 200, ready
            seen.append(ready["checks"].get(MAILBOX_CHECK, "missing"))
            await asyncio.sleep(0.1)
        assert "imap connection failed" in seen[-1], seen
        await asyncio.to_thread(own_dovecot.start)
        await arriving

        await until(lambda: imported(25), "every mail imported after the drop", 30)
        stored = await town.stored()
        assert {n for c, n in stored if c == "email"} == set(range(25))
        assert set(stored.values()) == {1}, stored
        await until(lambda: all_marked(own_dovecot, account), "every mail marked imported", 10)

        async def healthy() -> bool:
            checks = (await town.ready())[1]["checks"]
            return str(checks.get(MAILBOX_CHECK)) in ("idle", "connected", "polling")

        await until(healthy, "the mailbox check healthy again", 10)


# --- the attachment storage full --------------------------------------------------------------

HIDDEN = re.compile(r'name="(csrf_token|submission_id)" value="([^"]*)"')


# Mounting takes root: as root directly, otherwise through sudo without a password (as CI's
# machines allow for installing packages); the mount belongs to this user either way.
AS_ROOT = [] if os.geteuid() == 0 else ["sudo", "-n"]


@contextlib.contextmanager
def small_disk(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``folder`` (as root, or with sudo), unmounted afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        [*AS_ROOT, "mount", "-t", "tmpfs", "-o", f"size={size},mode=0755,uid={os.getuid()}",
         "tmpfs", str(folder)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if mounted.returncode != 0:
        unavailable(
            "the disk-full test mounts a small tmpfs and needs root or password-less sudo for it: "
            f"mount said {mounted.stderr.strip() or mounted.returncode}"
        )
    try:
        yield folder
    finally:
        subprocess.run([*AS_ROOT, "umount", "-l", str(folder)], capture_output=True, check=False)


def fill(folder: Path) -> Path:
    """Write a file into ``folder`` until its file system has no room left."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            os.write(fd, os.urandom(4096))
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
    finally:
        os.close(fd)
    return filler


def photo() -> bytes:
    """A JPEG as the form's check sees one; random, so no other test stored it already."""
    return b"\xff\xd8\xff\xe0" + os.urandom(30_000)


async def post_form_with_photo(
    town: Town, tokens: dict[str, str], n: int, data: bytes
) -> tuple[int, str]:
    form = aiohttp.FormData()
    for key, value in {
        **tokens,
        "kind": "report",
        "message": text_of("webform", n),
        "email": f"formulier{n}@example.be",
    }.items():
        form.add_field(key, value)
    form.add_field("attachment", io.BytesIO(data), filename="put.jpg", content_type="image/jpeg")
    async with town.http.post(f"{town.base}/contact", data=form) as answer:
        return answer.status, await answer.text()


async def test_attachment_storage_full(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    dovecot: DovecotServer,
) -> None:
    account = dovecot.new_account()
    imap_env(monkeypatch, dovecot, account)
    # The sample configuration keeps attachments in <data_dir>/attachments.
    with small_disk(tmp_path / "var" / "attachments", "256k") as storage:
        filler = fill(storage)
        async with serve(tmp_path, sqlite(tmp_path), monkeypatch, interval_seconds=0.2) as town:
            async with town.http.get(f"{town.base}/contact") as page:
                tokens = dict(HIDDEN.findall(await page.text()))
            pdf, jpeg = b"%PDF-1.4\n" + os.urandom(30_000), photo()
            with_file, without_file = mail(1, attachment=pdf), mail(2)
            uids = await asyncio.to_thread(dovecot.append, account, with_file, without_file)
            # A photo that cannot be kept: the form is refused (not "thank you"), nothing is
            # stored that its sender would think arrived.
            refused, shown = await post_form_with_photo(town, tokens, 1, jpeg)
            assert refused == 503, shown
            assert "Uw bericht is NIET aangekomen" in shown, shown
            assert "zonder bestand" in shown, shown  # what the citizen can do meanwhile
            # Text without files still goes in, on the form and by mail.
            assert await town.webform(2) == 201

            async def mail_without_file_in() -> bool:
                flags = await asyncio.to_thread(dovecot.flags, account)
                return "$MeldpuntImported" in flags[uids[1]]

            await until(mail_without_file_in, "the mail without a file imported", 15)
            assert ("email", 2) in await town.stored()

            async def failure_reported() -> bool:
                status, ready = await town.ready()
                assert status == 200, ready  # the rest works: reported, not unready
                return "storing an imported mail failed" in ready["checks"][MAILBOX_CHECK]

            await until(failure_reported, "the mail with a file reported as not stored", 10)
            status, ready = await town.ready()
            assert status == 200, ready
            assert ready["checks"]["attachments storage"].startswith("full: "), ready
            stored = await town.stored()
            assert ("webform", 1) not in stored and ("email", 1) not in stored, stored
            # The mail with the file stays on the server, not marked as imported.
            flags = await asyncio.to_thread(dovecot.flags, account)
            assert flags[uids[0]] == set(), flags

            # Room again: the check clears at once, the mail comes in by itself, and the citizen
            # who sends the form again is taken.
            filler.unlink()

            async def room() -> bool:
                return "attachments storage" not in (await town.ready())[1]["checks"]

            await until(room, "the attachment storage check cleared", 5)
            assert (await post_form_with_photo(town, tokens, 1, jpeg))[0] == 200

            async def caught_up() -> bool:
                return ("email", 1) in await town.stored()

            await until(caught_up, "the mail with the file imported once there was room", 20)
            stored = await town.stored()
            assert stored == Counter({(c, n): 1 for c in ("webform", "email") for n in (1, 2)})
            files = await town.rows(AttachmentRow)
            assert sorted(r["filename"] for r in files) == ["plan1.pdf", "put.jpg"], files
            for row in files:
                assert row["sha256"] and not row["removed_reason"], row
                kept = storage / row["sha256"][:2] / row["sha256"][2:4] / row["sha256"]
                assert kept.read_bytes() in (pdf, jpeg), row
            await until(lambda: all_marked(dovecot, account), "both mails marked imported", 10)
            assert not await town.quarantined()
