"""A real ``meldpunt serve``, killed with SIGKILL again and again, loses and doubles nothing.

Citizens write on every channel at once: the web form (JSON), SMS and WhatsApp (Twilio's signed
webhooks), Telegram (secret header), Messenger (Meta's HMAC), the web chat's WebSocket, and mail
an MTA drops into a real Dovecot mailbox. Meanwhile the process is killed at random moments
(seeded, the seed is printed) and started again on the same database and port. Clients do what
providers do: whatever got no 2xx is sent again, unchanged (the same Twilio MessageSid, Telegram
update, Messenger mid, web form submission id, chat client id), and staff answer tickets
through the API. Every other kill comes just as a provider fake takes a send.

Afterwards every acknowledged message and every mail in the mailbox is stored exactly once; each
acknowledgement and answer marked sent reached its provider fake exactly once, one a kill cut
off is marked ``uncertain`` and reached it at most once (never sent blindly again), and nothing
reached a fake twice.

Bigger runs: ``MELDPUNT_FAULT_SCALE=10`` multiplies messages, kills and answers;
``MELDPUNT_FAULT_SEED`` repeats a run.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import make_msgid
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
import sqlalchemy as sa

from store.db import Database
from store.models import JournalEntry, Message, OutboxRow, Ticket, table_of
from tests.conftest import free_port
from tests.connectors.email.conftest import Account, DovecotServer, Recorder, Start, imap_env
from tests.connectors.messenger.conftest import FakeGraph
from tests.connectors.messenger.conftest import message as messenger_message
from tests.connectors.messenger.conftest import signed as meta_signed
from tests.connectors.messenger.test_connector import messenger_env
from tests.connectors.telegram.conftest import (
    SECRET,
    FakeTelegram,
    telegram_env,
    text_update,
)
from tests.connectors.twilio.conftest import FakeTwilio, fixture, signed
from tests.connectors.twilio.test_connector import WHATSAPP_SENDER, twilio_env
from tests.service import ServiceProbe, sample_config, start_server, until

PUBLIC_URL = "https://meldpunt.wingene.example"
SITE = "https://www.wingene.example"
TOWN_ADDRESS = "contactpunt@wingene.example"
MESSAGES, JOURNAL, OUTBOX = table_of(Message), table_of(JournalEntry), table_of(OutboxRow)
TICKETS = table_of(Ticket)
T = TypeVar("T")

SCALE = max(1, int(os.environ.get("MELDPUNT_FAULT_SCALE", "1")))
# Messages per channel at scale 1: about 2,000 in all, a CI-sized run.
PER_CHANNEL = {
    "webform": 320,
    "sms": 320,
    "whatsapp": 320,
    "telegram": 320,
    "messenger": 320,
    "webchat": 240,  # 16 visitors writing 15 messages each
    "email": 160,
}
CHAT_VISITORS = 16
KILLS = 4 * SCALE
# Staff answers posted while the kills go on (SMS, WhatsApp, Telegram and Messenger tickets).
REPLIES = 120
# Requests in flight at once over all HTTP channels, as several providers would have.
IN_FLIGHT = 48
# Every citizen message carries its own tag; what the service stored is matched by it.
TAG = re.compile(r"fault-([a-z]+)-(\d{6})")

# The sample configuration with the limits per client address lifted (every citizen here comes
# from 127.0.0.1), the mailbox also polled, and the outbox sent at once.
FAST = {
    "log_level: info": "log_level: warning",
    "rate_limit_per_minute: 10 ": "rate_limit_per_minute: 1000000 ",
    "messages_per_minute: 20 ": "messages_per_minute: 1000000 ",
    "new_visitors_per_address_per_hour: 60 ": "new_visitors_per_address_per_hour: 1000000 ",
    "messages_per_address_per_minute: 120 ": "messages_per_address_per_minute: 1000000 ",
    "poll_seconds: 60 ": "poll_seconds: 1 ",
    # A send cut off by a kill turns uncertain after twice the send time-out; a send that
    # outlasts the time-out turns uncertain too (it may have arrived), so keep it well above
    # a fake provider's answer time under load.
    "routing:\n  file:": "dispatch: {interval_seconds: 0.2, send_timeout_seconds: 5, "
    "backoff_seconds: 0.2, backoff_max_seconds: 0.5}\nrouting:\n  file:",
}


def tag(channel: str, n: int) -> str:
    return f"fault-{channel}-{n:06d}"


def text_of(channel: str, n: int) -> str:
    return f"Melding {tag(channel, n)}: de straatlamp aan huisnummer {n} brandt niet."


@dataclass
class Tally:
    """What the clients of one channel did."""

    sent: int = 0
    acknowledged: set[int] = field(default_factory=set)
    retried: set[int] = field(default_factory=set)  # messages sent more than once
    resends: int = 0  # every attempt after a message's first
    refused: list[str] = field(default_factory=list)


class Service:
    """The ``meldpunt serve`` process under test: started, killed, started again."""

    def __init__(self, config_file: Path, port: int, env: dict[str, str], log: Path) -> None:
        self.config_file, self.port, self.env, self.log = config_file, port, env, log
        self.proc: asyncio.subprocess.Process | None = None
        self.kills = 0
        # When the process now running was started: what the ones before claimed is older.
        self.restarted_at = datetime.now(UTC)
        self.start_seconds: list[float] = []

    async def start(self) -> None:
        self.restarted_at = datetime.now(UTC)
        begin = time.monotonic()
        self.proc = await start_server(self.config_file, self.port, self.env, log=self.log)
        self.start_seconds.append(round(time.monotonic() - begin, 1))

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        await self.proc.wait()
        self.kills += 1

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


@dataclass
class Operator(ServiceProbe):
    """The database of the service process, as tests ask it for a staff token."""

    database: Database

    @property
    def db(self) -> Database:
        return self.database


class Citizens:
    """Every channel's clients, retrying as providers do until they get a 2xx."""

    def __init__(self, port: int, rng: random.Random) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.rng = rng
        self.tallies = {channel: Tally() for channel in PER_CHANNEL}
        self.slots = asyncio.Semaphore(IN_FLIGHT)
        self._progress = asyncio.Event()

    def acknowledge(self, tally: Tally, *numbers: int) -> None:
        tally.acknowledged.update(numbers)
        self._progress.set()

    async def until_acknowledged(self, count: int) -> None:
        """Wait until ``count`` messages, over all channels, were acknowledged."""
        while sum(len(t.acknowledged) for t in self.tallies.values()) < count:
            self._progress.clear()
            await self._progress.wait()

    async def again(self, tally: Tally, n: int, attempt: int) -> None:
        """Wait before resending message ``n`` the ``attempt``-th time: longer each time, up
        to a second, as providers back off."""
        tally.retried.add(n)
        tally.resends += 1
        await asyncio.sleep(self.rng.uniform(0.5, 1.0) * min(1.0, 0.05 * 2 ** min(attempt, 5)))

    async def _post(
        self,
        http: aiohttp.ClientSession,
        channel: str,
        n: int,
        request: Callable[[], tuple[str, bytes, dict[str, str]]],
    ) -> None:
        """Post until a 2xx; a 503, a reset or a refused connection is tried again, unchanged."""
        tally = self.tallies[channel]
        tally.sent += 1
        path, body, headers = request()
        for attempt in itertools.count(1):
            async with self.slots:
                try:
                    async with http.post(self.base + path, data=body, headers=headers) as answer:
                        await answer.read()
                        if 200 <= answer.status < 300:
                            self.acknowledge(tally, n)
                            return
                        if answer.status < 500:
                            tally.refused.append(f"{n}: {answer.status} {await answer.text()}")
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
            await self.again(tally, n, attempt)

    def webform(self, n: int) -> tuple[str, bytes, dict[str, str]]:
        body = {
            "kind": "report",
            "message": text_of("webform", n),
            "email": f"formulier{n}@example.be",
            "submission_id": f"fault{n:08d}",
        }
        return "/contact", json.dumps(body).encode(), {"Content-Type": "application/json"}

    def twilio(self, channel: str, n: int) -> tuple[str, bytes, dict[str, str]]:
        sid = f"SMf{channel[0]}{n:030x}"
        phone = f"+3247{1 if channel == 'sms' else 2}{n:06d}"
        form = fixture("sms", MessageSid=sid, SmsMessageSid=sid, SmsSid=sid)
        form["Body"] = text_of(channel, n)
        if channel == "whatsapp":
            form.update(From=f"whatsapp:{phone}", To=f"whatsapp:{WHATSAPP_SENDER}")
        else:
            form["From"] = phone
        path = "/webhooks/twilio/messaging"
        body, headers = signed(PUBLIC_URL + path, form)
        return path, body, headers

    def telegram(self, n: int) -> tuple[str, bytes, dict[str, str]]:
        update = text_update(700_000_000 + n, 1, text_of("telegram", n))
        chat = 500_000_000 + n
        update["message"]["chat"]["id"] = chat
        update["message"]["from"]["id"] = chat
        headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": SECRET}
        return "/webhooks/telegram", json.dumps(update).encode(), headers

    def messenger(self, n: int) -> tuple[str, bytes, dict[str, str]]:
        payload = messenger_message(text_of("messenger", n), f"m_fault{n:06d}", f"77{n:014d}")
        body = json.dumps(payload).encode()
        return "/webhooks/facebook", body, meta_signed(body)

    async def send(self, http: aiohttp.ClientSession, channel: str, n: int) -> None:
        if channel == "webform":
            await self._post(http, channel, n, lambda: self.webform(n))
        elif channel in ("sms", "whatsapp"):
            await self._post(http, channel, n, lambda: self.twilio(channel, n))
        elif channel == "telegram":
            await self._post(http, channel, n, lambda: self.telegram(n))
        else:
            await self._post(http, channel, n, lambda: self.messenger(n))

    async def chat(self, http: aiohttp.ClientSession, visitor: int, numbers: list[int]) -> None:
        """One widget: each message resent after a reconnect, with its client id, until the
        server says ``received``."""
        tally = self.tallies["webchat"]
        token: str | None = None
        ws: aiohttp.ClientWebSocketResponse | None = None
        for n in numbers:
            tally.sent += 1
            frame = json.dumps(
                {"type": "message", "client_id": f"c{n:06d}", "text": text_of("webchat", n)}
            )
            for attempt in itertools.count(1):
                try:
                    if ws is None or ws.closed:
                        ws = await http.ws_connect(
                            f"{self.base}/chat/ws", headers={"Origin": SITE}, heartbeat=None
                        )
                        await ws.send_str(
                            json.dumps({"type": "hello", "visitor": token, "lang": "nl"})
                        )
                        welcome = json.loads((await ws.receive(timeout=10)).data)
                        token = welcome["visitor"]
                    await ws.send_str(frame)
                    answer = await self._chat_answer(ws, f"c{n:06d}")
                    if answer["type"] == "received":
                        self.acknowledge(tally, n)
                        break
                    if answer["code"] != "unavailable":
                        tally.refused.append(f"{n}: {answer}")
                        break
                except (aiohttp.ClientError, TimeoutError, ConnectionError, TypeError, KeyError):
                    # A socket the kill cut off: reconnect as the widget does.
                    if ws is not None:
                        await ws.close()
                    ws = None
                await self.again(tally, n, attempt)
        if ws is not None:
            await ws.close()

    @staticmethod
    async def _chat_answer(ws: aiohttp.ClientWebSocketResponse, client_id: str) -> dict[str, Any]:
        async with asyncio.timeout(15):
            while True:
                message = await ws.receive()
                if message.type is not aiohttp.WSMsgType.TEXT:
                    raise ConnectionError(f"socket ended: {message.type}")
                frame: dict[str, Any] = json.loads(message.data)
                if frame["type"] in ("received", "error") and frame.get("client_id") == client_id:
                    return frame


def mail(n: int) -> bytes:
    message = EmailMessage()
    message["From"] = f"Burger {n} <mailer{n}@example.be>"
    message["To"] = TOWN_ADDRESS
    message["Subject"] = f"Melding {n}"
    message["Message-ID"] = make_msgid(f"fault{n}", "example.be")
    message.set_content(text_of("email", n) + "\n")
    return bytes(message)


async def drop_mail(
    dovecot: DovecotServer, account: Account, numbers: list[int], citizens: Citizens
) -> None:
    """An MTA delivering mail in small bursts while everything else goes on."""
    tally = citizens.tallies["email"]
    for start in range(0, len(numbers), 10):
        burst = numbers[start : start + 10]
        await asyncio.to_thread(dovecot.append, account, *(mail(n) for n in burst))
        tally.sent += len(burst)
        citizens.acknowledge(tally, *burst)
        await asyncio.sleep(citizens.rng.uniform(0.05, 0.4))


class Staff:
    """Staff answering SMS, WhatsApp, Telegram and Messenger tickets through the API while the
    service is being killed. A reply that got no answer is not posted again: whether it was
    stored is read from the database afterwards."""

    def __init__(self, port: int, db: Database, token: str, rng: random.Random) -> None:
        self.url = f"http://127.0.0.1:{port}/api/v1/tickets/{{}}/replies"
        self.db, self.token, self.rng = db, token, rng
        self.accepted: set[int] = set()
        self.unanswered: set[int] = set()
        self.answered: set[str] = set()

    async def work(self, http: aiohttp.ClientSession, load: asyncio.Future[Any]) -> None:
        """Answer a few of the newest tickets, again and again, until the citizens are done."""
        number = 0
        while not load.done() and number < REPLIES * SCALE:
            for reference in await self._unanswered_tickets():
                number += 1
                self.answered.add(reference)
                body = {"text": f"Antwoord {tag('reply', number)}: we herstellen de lamp."}
                await self._reply(http, self.url.format(reference), number, body)
            await asyncio.sleep(self.rng.uniform(0.05, 0.3))

    async def _reply(
        self, http: aiohttp.ClientSession, url: str, number: int, body: dict[str, str]
    ) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        while True:
            try:
                async with http.post(url, json=body, headers=headers) as answer:
                    await answer.read()
                    assert answer.status in (201, 503), await answer.text()
                    if answer.status == 201:
                        self.accepted.add(number)
                        return
            except aiohttp.ClientConnectorError:
                pass  # refused: the service is down and got nothing
            except (aiohttp.ClientError, TimeoutError):
                # Sent, but no answer: stored or not, the database will tell.
                self.unanswered.add(number)
                return
            # Nothing stored: staff click again a moment later.
            await asyncio.sleep(0.5)

    async def _unanswered_tickets(self) -> list[str]:
        try:
            async with self.db.engine.connect() as conn:
                found = await conn.execute(
                    sa.select(TICKETS.c.reference)
                    .join(MESSAGES, MESSAGES.c.ticket_id == TICKETS.c.id)
                    .where(
                        MESSAGES.c.direction == "in",
                        MESSAGES.c.channel.in_(("sms", "whatsapp", "telegram", "messenger")),
                    )
                    .order_by(MESSAGES.c.id.desc())
                    .limit(20)
                )
                references = [r for (r,) in found.all() if r not in self.answered]
        except sa.exc.OperationalError:  # SQLite busy while a killed writer's journal is undone
            return []
        return references[:3]


class Watched(list[T]):
    """A provider fake's record of calls that says when one comes in."""

    def __init__(self, arrived: asyncio.Event) -> None:
        super().__init__()
        self.arrived = arrived

    def append(self, item: T) -> None:
        super().append(item)
        self.arrived.set()


async def kill_at_random(
    service: Service, rng: random.Random, citizens: Citizens, provider_called: asyncio.Event
) -> list[str]:
    """SIGKILL ``KILLS`` times, each once a random share of the messages was acknowledged,
    so every kill falls within the load however fast the machine is; every other kill waits
    for a provider fake to take a send, so it hits a send in flight. Says when each came."""
    total = sum(PER_CHANNEL.values()) * SCALE
    moments: list[str] = []
    shares = sorted(int(rng.uniform(0.05, 0.9) * total) for _ in range(KILLS))
    for number, moment in enumerate(shares):
        await citizens.until_acknowledged(moment)
        when = f"{moment} acknowledged"
        if number % 2:
            provider_called.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(provider_called.wait(), 3)
                when += ", mid-send"
        moments.append(when)
        await service.kill()
        await service.start()
    return moments


async def stored_messages(db: Database) -> list[tuple[str, str, str | None]]:
    async with db.engine.connect() as conn:
        found = await conn.execute(
            sa.select(MESSAGES.c.channel, MESSAGES.c.text, MESSAGES.c.subject).where(
                MESSAGES.c.direction == "in"
            )
        )
        return [(c, t, s) for c, t, s in found.all()]


def inbound_problems(
    citizens: Citizens, stored: list[tuple[str, str, str | None]], in_mailbox: set[int]
) -> list[str]:
    """Prints what each channel's clients did and what was stored; returns what is wrong."""
    found: Counter[tuple[str, int]] = Counter()
    problems: list[str] = []
    for channel, text, subject in stored:
        tags = {m.groups() for m in TAG.finditer(f"{subject or ''}\n{text}")}
        if len(tags) != 1 or next(iter(tags))[0] != channel:
            problems.append(f"a stored {channel} message with tags {tags}: {text[:80]!r}")
            continue
        [(_, number)] = tags
        found[(channel, int(number))] += 1
    print(
        f"{'inbound':<10}{'sent':>7}{'acked':>7}{'retried':>9}{'resends':>9}"
        f"{'stored':>8}{'twice':>7}"
    )
    for channel, tally in citizens.tallies.items():
        mine = {n: count for (c, n), count in found.items() if c == channel}
        twice = sum(count - 1 for count in mine.values())
        print(
            f"{channel:<10}{tally.sent:>7}{len(tally.acknowledged):>7}{len(tally.retried):>9}"
            f"{tally.resends:>9}"
            f"{len(mine):>8}{twice:>7}"
        )
        promised = tally.acknowledged | (in_mailbox if channel == "email" else set())
        if lost := sorted(promised - set(mine)):
            problems.append(f"{channel}: {len(lost)} acknowledged but not stored: {lost[:5]}")
        if twice:
            problems.append(f"{channel}: {twice} stored twice")
        if tally.refused:
            problems.append(f"{channel}: refused {tally.refused[:3]}")
        if len(tally.acknowledged) != tally.sent:
            problems.append(f"{channel}: {tally.sent - len(tally.acknowledged)} never answered")
    return problems


def received_by_fakes(
    twilio: FakeTwilio, telegram: FakeTelegram, graph: FakeGraph, smtp: Recorder
) -> list[tuple[str, str, str]]:
    """(channel, recipient, what) of every message a provider fake accepted; ``what`` tells
    a resend of the same outbox row from another message."""
    found = [
        ("whatsapp" if c["To"].startswith("whatsapp:") else "sms", c["To"], c["Body"])
        for c in twilio.sent()
    ]
    found += [
        ("telegram", str(c.params["chat_id"]), str(c.params["text"])) for c in telegram.sent()
    ]
    found += [
        ("messenger", str(c.body["recipient"]["id"]), json.dumps(c.body["message"]))
        for c in graph.sent()
    ]
    for mail_ in smtp.received:
        message_id = BytesParser().parsebytes(mail_.raw, headersonly=True)["Message-ID"]
        found += [("email", address, str(message_id)) for address in mail_.rcpt_tos]
    return [(c, who.removeprefix("whatsapp:"), what) for c, who, what in found]


def outbound_problems(
    outbox: Sequence[Any], received: list[tuple[str, str, str]], staff: Staff
) -> list[str]:
    """Each outbox row sent reached its provider once; one a kill interrupted at most once
    (``uncertain``, or still ``sending`` when cut off by the last kill); one not sent yet never."""
    problems: list[str] = []
    rows = [r for r in outbox if r.channel != "webchat"]  # the chat is not a provider
    # An interrupted e-mail is sent again on purpose, with its own Message-ID: the citizen's
    # mail program shows one message. Only a second Message-ID would be a second mail.
    received = [
        *dict.fromkeys(r for r in received if r[0] == "email"),
        *(r for r in received if r[0] != "email"),
    ]
    if twice := [item for item, count in Counter(received).items() if count > 1]:
        problems.append(f"sent twice: {twice[:3]}")
    got = Counter((c, who) for c, who, _ in received)
    rows_in: dict[str, Counter[tuple[str, str]]] = {}
    for r in rows:
        who = (r.channel, (r.recipient or "").removeprefix("whatsapp:"))
        rows_in.setdefault(r.state, Counter())[who] += 1
    sent, uncertain, cut_off = (rows_in.get(s, Counter()) for s in ("sent", "uncertain", "sending"))
    # A send cut off by the last kill and not yet judged uncertain counts as one.
    for who in got.keys() | sent.keys():
        if not sent[who] <= got[who] <= sent[who] + uncertain[who] + cut_off[who]:
            problems.append(
                f"{who}: {sent[who]} sent, {uncertain[who]} uncertain, {cut_off[who]} cut off, "
                f"received {got[who]}"
            )
    if failed := [(r.channel, r.recipient, r.reason) for r in rows if r.state == "failed"]:
        problems.append(f"failed: {failed[:3]}")
    replies = Counter(
        int(m.group(2)) for r in rows if (m := TAG.search(r.body)) and m.group(1) == "reply"
    )
    if lost := staff.accepted - set(replies):
        problems.append(f"replies accepted (201) but not in the outbox: {sorted(lost)[:5]}")
    if double := [n for n, count in replies.items() if count > 1]:
        problems.append(f"replies queued twice: {double[:5]}")
    states = Counter((r.channel, r.state) for r in rows)
    # How many of the uncertain sends had in fact arrived.
    arrived: Counter[str] = Counter()
    for pair in uncertain:
        arrived[pair[0]] += got[pair] - sent[pair]
    print(
        f"{'outbound':<10}{'queued':>7}{'sent':>7}{'uncertain':>10}{'arrived':>8}{'cut off':>8}"
        f"{'later':>6}{'received':>9}"
    )
    for channel in sorted({r.channel for r in rows}):
        mine = {state: n for (c, state), n in states.items() if c == channel}
        later = sum(n for state, n in mine.items() if state in ("pending", "waiting"))
        print(
            f"{channel:<10}{sum(mine.values()):>7}{mine.get('sent', 0):>7}"
            f"{mine.get('uncertain', 0):>10}{arrived[channel]:>8}{mine.get('sending', 0):>8}"
            f"{later:>6}"
            f"{sum(1 for c, _, _ in received if c == channel):>9}"
        )
    print(
        f"staff replies: {len(staff.accepted)} accepted, {len(staff.unanswered)} without answer, "
        f"{len(replies)} queued"
    )
    return problems


async def test_sigkill_on_every_channel_loses_and_doubles_nothing(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fake_twilio: FakeTwilio,
    fake_telegram: FakeTelegram,
    fake_graph: FakeGraph,
    dovecot: DovecotServer,
    start_smtp: Start,
) -> None:
    seed = int(os.environ.get("MELDPUNT_FAULT_SEED") or random.randrange(1 << 32))
    print(f"\nfault test: seed {seed} (MELDPUNT_FAULT_SEED={seed} repeats it), scale {SCALE}")
    rng = random.Random(seed)
    began = time.monotonic()

    smtp = Recorder()
    smtp_port = await start_smtp(smtp)
    account = dovecot.new_account()
    twilio_env(monkeypatch, fake_twilio)
    telegram_env(monkeypatch, fake_telegram)
    messenger_env(monkeypatch, fake_graph)
    imap_env(monkeypatch, dovecot, account)
    for name, value in {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp_port),
        "SMTP_TLS": "none",
        "SMTP_FROM": TOWN_ADDRESS,
    }.items():
        monkeypatch.setenv(name, value)
    config = sample_config(tmp_path, database_url, monkeypatch, replace=FAST)
    port = free_port()
    service = Service(config.config_file, port, dict(os.environ), tmp_path / "serve.log")
    citizens = Citizens(port, rng)
    provider_called = asyncio.Event()
    fake_twilio.calls = Watched(provider_called)
    fake_telegram.calls = Watched(provider_called)
    fake_graph.calls = Watched(provider_called)
    smtp.received = Watched(provider_called)

    numbers = {c: list(range(count * SCALE)) for c, count in PER_CHANNEL.items()}
    webhooks = [(c, n) for c in PER_CHANNEL if c not in ("webchat", "email") for n in numbers[c]]
    rng.shuffle(webhooks)
    visitors = [numbers["webchat"][v::CHAT_VISITORS] for v in range(CHAT_VISITORS)]

    db = Database(database_url)
    try:
        staff = Staff(port, db, await Operator(db).staff_token(), rng)
        await service.start()
        timeout = aiohttp.ClientTimeout(total=15)
        connector = aiohttp.TCPConnector(limit=IN_FLIGHT + CHAT_VISITORS + 8)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
            load = asyncio.gather(
                *(citizens.send(http, c, n) for c, n in webhooks),
                *(citizens.chat(http, v, ns) for v, ns in enumerate(visitors)),
                drop_mail(dovecot, account, numbers["email"], citizens),
            )
            replying = asyncio.create_task(staff.work(http, load))
            moments = await kill_at_random(service, rng, citizens, provider_called)
            await load
            await replying
        print(
            f"killed {service.kills} times, after {moments}; starting took "
            f"{service.start_seconds} s; load took {time.monotonic() - began:.1f} s"
        )

        # The service running now reads the mailbox to the end and settles the outbox: sent,
        # or uncertain once a send cut off by a kill is older than twice the send time-out.
        mails = len(numbers["email"])

        async def settled() -> bool:
            async with db.engine.connect() as conn:
                imported = await conn.scalar(
                    sa.select(sa.func.count()).where(
                        MESSAGES.c.direction == "in", MESSAGES.c.channel == "email"
                    )
                )
                # Everything queued went out, or was judged uncertain (a send the kills cut off).
                unsent = await conn.scalar(
                    sa.select(sa.func.count()).where(
                        OUTBOX.c.state.in_(("pending", "sending")), OUTBOX.c.channel != "webchat"
                    )
                )
            for what, done in (("mail imported", imported == mails), ("outbox sent", not unsent)):
                if done:
                    finished.setdefault(what, round(time.monotonic() - began, 1))
            return len(finished) == 2

        finished: dict[str, float] = {}
        late: str | None = None
        try:
            await until(settled, f"{mails} mails imported, the outbox sent", 60 * SCALE)
        except AssertionError as exc:
            late = str(exc)  # the counts below say what is missing
        print(f"after the load, in s since the start: {finished}")
        await service.stop()

        stored = await stored_messages(db)
        async with db.engine.connect() as conn:
            quarantined = (
                await conn.execute(
                    sa.select(JOURNAL.c.channel, JOURNAL.c.error).where(
                        JOURNAL.c.state == "quarantined"
                    )
                )
            ).all()
            outbox = list(
                (
                    await conn.execute(
                        sa.select(
                            OUTBOX.c.channel, OUTBOX.c.recipient, OUTBOX.c.state,
                            OUTBOX.c.reason, OUTBOX.c.body,
                        )
                    )
                ).all()
            )  # fmt: skip
    finally:
        await service.stop()
        await db.close()

    in_mailbox = {
        int(m.group(2))
        for raw in dovecot.messages(account).values()
        if (m := TAG.search(raw.decode(errors="replace")))
    }
    problems = inbound_problems(citizens, stored, in_mailbox)
    if quarantined:
        problems.append(f"quarantined: {quarantined[:3]}")
    if late:
        problems.append(late)
    received = received_by_fakes(fake_twilio, fake_telegram, fake_graph, smtp)
    problems += outbound_problems(outbox, received, staff)
    print(f"fault test took {time.monotonic() - began:.1f} s")
    assert not problems, "\n".join(problems)
