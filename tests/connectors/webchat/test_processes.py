"""The web chat with several processes on one PostgreSQL database, as compose.yaml runs it.

A visitor's socket lives in the web process that accepted it; the answer is sent by a worker.
Real ``meldpunt serve`` processes (two web, one worker) show that an answer reaches the
visitor's sockets in both web processes live, once, and is marked delivered; that what the
visitor writes shows in their tab on the other process; and that once every socket closed, an
answer waits for the visitor as with one process. In-process tests cover what the processes
share: presence rows that expire when their process stops renewing them, notices that still
arrive after the listening connection was cut, and the catch-up read that pushes an answer
whose notice never came.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa

import connectors.webchat.connector as webchat_connector
from connectors.webchat.connector import WebChatConnector
from ingest.dispatch import Dispatcher, DispatchPolicy
from ingest.model import Channel, DeliveryStatus, OutboundMessage, SendResult
from meldpunt.app import RUNTIME, Role, create_app
from store.db import Database
from store.models import ChatPresence, Message, OutboxRow, table_of
from store.presence import DatabasePresence
from tests.conftest import Clock, PostgresCluster
from tests.connectors.webchat.conftest import (
    FAST,
    PUBLIC_URL,
    SITE,
    Client,
    ClientFactory,
    Visitor,
)
from tests.service import ServiceProbe, sample_config, until
from tests.test_processes import (  # noqa: F401 - postgres_database and processes are fixtures
    Process,
    Processes,
    count,
    postgres_database,
    processes,
)

MESSAGES, OUTBOX, PRESENCE = table_of(Message), table_of(OutboxRow), table_of(ChatPresence)


class Staff(ServiceProbe):
    """An operator calling the REST API of one process or another."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @property
    def db(self) -> Database:
        return self._db

    async def reply(self, process: Process, reference: str, text: str) -> None:
        await self.reply_over_http(process.url, reference, text)


async def open_chat(http: aiohttp.ClientSession, base: str, token: str | None = None) -> Visitor:
    ws = await http.ws_connect(f"{base}/chat/ws", headers={"Origin": SITE})
    await ws.send_str(json.dumps({"type": "hello", "visitor": token, "lang": "nl"}))
    welcome = json.loads((await ws.receive(timeout=10)).data)
    assert welcome["type"] == "welcome", welcome
    return Visitor(ws, welcome)


async def frames_for(visitor: Visitor, seconds: float) -> list[dict[str, Any]]:
    """Every frame the widget has or gets within ``seconds``."""
    found, visitor.backlog = visitor.backlog, []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = await visitor.ws.receive(timeout=left)
        except TimeoutError:
            break
        if message.type is not aiohttp.WSMsgType.TEXT:
            break
        found.append(json.loads(message.data))
    return found


def staff(frame: dict[str, Any]) -> bool:
    return bool(frame["from"] == "staff")


@pytest.mark.postgres
async def test_an_answer_sent_by_a_worker_reaches_the_visitor_in_every_web_process(
    tmp_path: Path,
    postgres_database: str,  # noqa: F811 - the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
    processes: Processes,  # noqa: F811 - the fixture imported above
) -> None:
    monkeypatch.setenv("MELDPUNT_PUBLIC_URL", PUBLIC_URL)
    for name in ("IMAP_HOST", "IMAP_USER", "SMTP_HOST"):
        monkeypatch.delenv(name, raising=False)
    sample_config(tmp_path, postgres_database, monkeypatch, replace=FAST)
    db = Database(postgres_database)
    a, b, worker = await asyncio.gather(
        processes.start("web"), processes.start("web"), processes.start("worker")
    )
    operator = Staff(db)
    listeners = (
        sa.select(sa.func.count())
        .where(
            sa.text("application_name = 'meldpunt-webchat-listener'"),
            sa.text("datname = current_database()"),
        )
        .select_from(sa.text("pg_stat_activity"))
    )
    try:
        # Each web process listens for notices on a connection of its own; the worker does not.
        await until(lambda: _equals(count(db, listeners), 2), "two listeners", within=10)
        async with aiohttp.ClientSession() as http:
            first = await open_chat(http, a.url)
            received = await first.say("De straatlamp aan de kerk is kapot.")
            reference = received["reference"]
            # The worker sends the acknowledgement; A, where the visitor is, pushes it.
            ack = await first.frame("message", lambda f: f["from"] == "system", within=5)
            assert reference in ack["text"]
            await first.frame("queue", lambda f: f["position"] == 1, within=5)

            # The same visitor in a second tab, which the load balancer sent to B.
            second = await open_chat(http, b.url, first.token)
            assert [line["id"] for line in second.welcome["transcript"]] == [
                received["id"],
                ack["id"],
            ]
            # What the visitor writes in one tab shows in the other, on the other process.
            again = await first.say("Het is de derde lamp links.")
            mirrored = await second.frame("message", lambda f: f["id"] == again["id"], within=5)
            assert mirrored["from"] == "visitor"

            # Staff answer through B's API; the worker sends; both tabs show it at once.
            started = time.monotonic()
            await operator.reply(b, reference, "We herstellen de lamp morgen.")
            shown = await asyncio.gather(
                first.frame("message", staff, within=5), second.frame("message", staff, within=5)
            )
            took = time.monotonic() - started
            assert [f["text"] for f in shown] == ["We herstellen de lamp morgen."] * 2
            assert shown[0]["id"] == shown[1]["id"]
            assert took < 3, f"the answer took {took:.1f} s to reach the widgets"
            [row] = await operator.rows(OutboxRow, OUTBOX.c.purpose == "reply")
            assert shown[0]["id"] == f"o-{row['id']}"
            # Answered: the visitor is out of the queue.
            await first.frame("queue", lambda f: f["position"] is None, within=5)

            async def delivered() -> bool:
                [message] = await operator.rows(Message, MESSAGES.c.id == row["message_id"])
                return bool(message["delivery_status"] == "delivered")

            await until(delivered, "the answer is marked delivered", within=5)

            # Once per socket, also after the notice, the catch-up reads and the heartbeats.
            later = await asyncio.gather(frames_for(first, 2.5), frames_for(second, 2.5))
            for frames in later:
                assert [f for f in frames if f.get("id") == shown[0]["id"]] == []

            # Every socket closed: the visitor has left the chat (no grace in this config).
            await first.close()
            await second.close()

            async def gone() -> bool:
                return await count(db, sa.select(sa.func.count()).select_from(PRESENCE)) == 0

            await until(gone, "the visitor's presence is given up", within=5)
            await operator.reply(a, reference, "De lamp brandt weer.")
            [parked] = await operator.wait_for_rows(
                1, OutboxRow, OUTBOX.c.purpose == "reply", OUTBOX.c.state == "waiting"
            )
            assert parked["reason"] == "waiting for the citizen to open the chat again"
    except AssertionError:
        for process in (a, b, worker):
            print(f"--- {process.role} on {process.port}\n{process.output()}")
        raise
    finally:
        await db.close()


async def _equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


# --- what the processes share, in-process -------------------------------------------------------

TTL = timedelta(seconds=20)


async def test_presence_lasts_while_renewed_and_a_grace_after_the_last_socket(
    database: Database, clock: Clock
) -> None:
    web_a = DatabasePresence(database.engine, "web-a", clock)
    worker = DatabasePresence(database.engine, "worker", clock)
    await web_a.here(["visitor-1", "visitor-2"], TTL)
    assert await worker.present("visitor-1")
    assert not await worker.present("visitor-3")

    # Renewed: still there past the first expiry.
    clock.now += timedelta(seconds=15)
    await web_a.here(["visitor-1", "visitor-2"], TTL)
    clock.now += timedelta(seconds=15)
    assert await worker.present("visitor-2")

    # visitor-1's last socket closes: present for the grace of a page load, then not.
    await web_a.gone(["visitor-1"], timedelta(seconds=30))
    clock.now += timedelta(seconds=25)
    assert await worker.present("visitor-1")
    clock.now += timedelta(seconds=10)
    assert not await worker.present("visitor-1")

    # web-a stops renewing (it died): visitor-2 stops counting once the TTL has passed, and
    # anyone clears the rows.
    assert not await worker.present("visitor-2")
    assert await worker.expire() == 2
    assert await count(database, sa.select(sa.func.count()).select_from(PRESENCE)) == 0

    # Without a grace, the last socket closing ends the presence at once; another process's
    # row of the same visitor stays.
    web_b = DatabasePresence(database.engine, "web-b", clock)
    await web_a.here(["visitor-4"], TTL)
    await web_b.here(["visitor-4"], TTL)
    await web_a.gone(["visitor-4"], timedelta(0))
    assert await worker.present("visitor-4")
    await web_b.gone(["visitor-4"], timedelta(0))
    assert not await worker.present("visitor-4")


@pytest.mark.postgres
async def test_notices_arrive_again_after_the_listening_connection_was_cut(
    postgres_database: str,  # noqa: F811 - the fixture imported above
    postgres_cluster: PostgresCluster,
) -> None:
    db = Database(postgres_database)
    presence = DatabasePresence(db.engine, "web-a")
    heard: asyncio.Queue[str] = asyncio.Queue()
    listening = asyncio.Event()
    starts = 0

    def started() -> None:
        nonlocal starts
        starts += 1
        listening.set()

    listener = asyncio.create_task(presence.listen(heard.put_nowait, started))
    try:
        await asyncio.wait_for(listening.wait(), 10)
        await presence.announce('{"visitor": "v1", "outbox": 1}')
        assert await asyncio.wait_for(heard.get(), 5) == '{"visitor": "v1", "outbox": 1}'

        # The server ends the listening connection (a restart, a network cut).
        listening.clear()
        async with db.engine.begin() as conn:
            cut = await conn.scalar(
                sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = 'meldpunt-webchat-listener'"
                )
            )
        assert cut == 1
        await asyncio.wait_for(listening.wait(), 10)
        assert starts == 2
        await presence.announce('{"visitor": "v1", "outbox": 2}')
        assert await asyncio.wait_for(heard.get(), 5) == '{"visitor": "v1", "outbox": 2}'
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
        await db.close()


class SentQuietly:
    """A worker's web chat sender whose notice got lost: it says ``sent`` and nothing else."""

    async def send(self, message: OutboundMessage) -> SendResult:
        return SendResult(f"o-{message.outbox_id}", DeliveryStatus.SENT)


StartRole = Callable[[Role], Awaitable[Client]]


@pytest.fixture
def start_role(
    tmp_path: Path,
    postgres_database: str,  # noqa: F811 - the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
    aiohttp_client: ClientFactory,
) -> StartRole:
    """Starts the service in this process with a role; all of them on one PostgreSQL database."""
    monkeypatch.setenv("MELDPUNT_PUBLIC_URL", PUBLIC_URL)
    for name in ("IMAP_HOST", "IMAP_USER", "SMTP_HOST"):
        monkeypatch.delenv(name, raising=False)
    config = sample_config(tmp_path, postgres_database, monkeypatch, replace=FAST)

    async def start(role: Role) -> Client:
        return await aiohttp_client(create_app(config, role=role))

    return start


async def chat_with_answer(web: Client, text: str) -> tuple[Visitor, Staff]:
    """A visitor on ``web`` who wrote, and the staff member who answered ``text``."""
    chat = web.app[RUNTIME].connectors[Channel.WEBCHAT]
    assert isinstance(chat, WebChatConnector) and chat.shared is not None
    operator = Staff(web.app[RUNTIME].db)
    ws = await web.ws_connect("/chat/ws", headers={"Origin": SITE})
    await ws.send_str(json.dumps({"type": "hello", "visitor": None, "lang": "nl"}))
    visitor = Visitor(ws, json.loads((await ws.receive(timeout=10)).data))
    reference = (await visitor.say("Waar haal ik een nieuwe rolcontainer?"))["reference"]
    response = await web.post(
        f"/api/v1/tickets/{reference}/replies",
        json={"text": text},
        headers={"Authorization": f"Bearer {await operator.staff_token()}"},
    )
    assert response.status == 201, await response.text()
    return visitor, operator


async def shown_once_and_delivered(visitor: Visitor, operator: Staff, text: str) -> None:
    answer = await visitor.frame("message", staff, within=5)
    assert answer["text"] == text
    [row] = await operator.rows(OutboxRow, OUTBOX.c.purpose == "reply")
    assert answer["id"] == f"o-{row['id']}"

    async def delivered() -> bool:
        [message] = await operator.rows(Message, MESSAGES.c.id == row["message_id"])
        return bool(message["delivery_status"] == "delivered")

    await until(delivered, "the answer is marked delivered", within=5)
    assert [f for f in await frames_for(visitor, 2.5) if f.get("id") == answer["id"]] == []


@pytest.mark.postgres
async def test_an_answer_a_worker_sends_is_pushed_on_its_notice(
    start_role: StartRole, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No catch-up read in time: only the notice can bring the answer.
    monkeypatch.setattr(webchat_connector, "CATCH_UP_SECONDS", 60.0)
    web = await start_role("web")
    await start_role("worker")
    visitor, operator = await chat_with_answer(web, "Aan het containerpark.")
    await shown_once_and_delivered(visitor, operator, "Aan het containerpark.")
    await visitor.close()


@pytest.mark.postgres
async def test_an_answer_whose_notice_was_lost_is_pushed_by_the_catch_up_read(
    start_role: StartRole,
) -> None:
    web = await start_role("web")
    visitor, operator = await chat_with_answer(web, "Aan het containerpark.")
    # A worker whose notice never reaches the web process.
    worker = Dispatcher(
        web.app[RUNTIME].db.engine, {Channel.WEBCHAT: SentQuietly()}, DispatchPolicy()
    )
    assert await worker.run_once() == 2  # the acknowledgement and the answer
    await shown_once_and_delivered(visitor, operator, "Aan het containerpark.")
    await visitor.close()
