"""MailboxReader against a real Dovecot: nothing is marked before ingest has it, nothing is lost."""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Callable
from email.message import EmailMessage
from typing import Any

import pytest
import structlog
from prometheus_client import REGISTRY

from connectors.email import mailbox
from connectors.email.mailbox import (
    IMPORTED_KEYWORD,
    TRUNCATED_HEADER,
    DeliveryFailed,
    MailboxReader,
)
from connectors.email.options import MailboxOptions
from tests.connectors.email.conftest import Account, DovecotServer, running_dovecot

MARKED = {"\\Seen", IMPORTED_KEYWORD.decode()}

ReaderFactory = Callable[..., MailboxReader]


class MemoryCursors:
    """The CursorStore protocol in a dict."""

    def __init__(self) -> None:
        self.values: dict[str, dict[str, Any]] = {}

    async def load(self, key: str) -> dict[str, Any] | None:
        value = self.values.get(key)
        return dict(value) if value is not None else None

    async def save(self, key: str, value: dict[str, Any]) -> None:
        self.values[key] = dict(value)


class CountingCursors(MemoryCursors):
    """Counts loads: every sync loads the cursor once."""

    def __init__(self) -> None:
        super().__init__()
        self.loads = 0

    async def load(self, key: str) -> dict[str, Any] | None:
        self.loads += 1
        return await super().load(key)


class Inbox:
    """Stands in for ingest: keeps every mail it is given; fails for the subjects in ``failing``."""

    def __init__(self) -> None:
        self.mails: list[bytes] = []
        self.failing: set[str] = set()
        self.arrived = asyncio.Event()

    async def deliver(self, raw: bytes) -> None:
        if subject_of(raw) in self.failing:
            raise RuntimeError("the database is not reachable")
        self.mails.append(raw)
        self.arrived.set()

    @property
    def subjects(self) -> list[str]:
        return [subject_of(raw) for raw in self.mails]


class ProcessKilled(BaseException):
    """The process dying at this point: nothing after it runs (no except Exception catches it)."""


def mail(subject: str, body: str = "Er ligt een boom over de Kerkstraat.\r\n") -> bytes:
    return (
        "From: An Peeters <an.peeters@example.test>\r\n"
        "To: meldpunt@stad.example\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <{uuid.uuid4()}@example.test>\r\n"
        "Date: Mon, 16 Nov 2026 10:12:00 +0100\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        f"{body}"
    ).encode()


def subject_of(raw: bytes) -> str:
    return str(email.message_from_bytes(raw, policy=email.policy.default)["Subject"])


def state(reader: MailboxReader) -> str:
    # A call, so mypy does not keep an earlier assert's narrowing of the state across awaits.
    return reader.status.state


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def eventually(check: Callable[[], bool], what: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.05)


async def stop(task: asyncio.Task[None]) -> float:
    """Cancel a run() task; returns how long it took to end."""
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return time.monotonic() - started


@pytest.fixture
async def make_reader() -> AsyncIterator[ReaderFactory]:
    """Builds readers (``max_message_bytes`` 1 MB unless given) and closes them after the test."""
    made: list[MailboxReader] = []

    def make(options: MailboxOptions, cursors: Any, deliver: Any, **kwargs: Any) -> MailboxReader:
        kwargs.setdefault("max_message_bytes", 1_000_000)
        reader = MailboxReader(options, cursors, deliver, **kwargs)
        made.append(reader)
        return reader

    yield make
    for reader in made:
        await reader.close()


# --- after_import modes --------------------------------------------------------------------------


async def test_new_mail_is_delivered_then_flagged(
    dovecot: DovecotServer, account: Account, make_reader: ReaderFactory
) -> None:
    sent = [mail("Put in de Stationsstraat"), mail("Lantaarnpaal kapot")]
    dovecot.append(account, *sent)
    cursors, inbox = MemoryCursors(), Inbox()
    reader = make_reader(dovecot.mailbox_options(account), cursors, inbox.deliver)
    imported_before = metric("meldpunt_imap_imported_total", mailbox=account.name)

    assert await reader.sync_once() == 2

    assert inbox.mails == sent  # byte for byte
    assert dovecot.flags(account) == {1: MARKED, 2: MARKED}
    assert cursors.values == {
        f"imap:{account.name}": {"uidvalidity": dovecot.uidvalidity(account), "last_uid": 2}
    }
    assert reader.status.imported == 2
    assert state(reader) == "connected"
    assert reader.status.last_sync_at is not None
    assert metric("meldpunt_imap_imported_total", mailbox=account.name) == imported_before + 2
    assert metric("meldpunt_imap_connected", mailbox=account.name) == 1
    assert await reader.sync_once() == 0
    await reader.close()
    assert state(reader) == "stopped"
    assert metric("meldpunt_imap_connected", mailbox=account.name) == 0


async def test_lost_cursor_does_not_import_marked_mail_again(
    dovecot: DovecotServer, account: Account, make_reader: ReaderFactory
) -> None:
    dovecot.append(account, mail("Zwerfvuil aan het park"), mail("Graffiti op de brug"))
    options = dovecot.mailbox_options(account)
    first = Inbox()
    assert await make_reader(options, MemoryCursors(), first.deliver).sync_once() == 2
    dovecot.append(account, mail("Nieuwe melding"))

    again = Inbox()
    assert await make_reader(options, MemoryCursors(), again.deliver).sync_once() == 1

    assert again.subjects == ["Nieuwe melding"]


async def test_move_mode_moves_mail_into_a_new_folder(
    dovecot: DovecotServer, account: Account, make_reader: ReaderFactory
) -> None:
    sent = [mail("Hond loopt los"), mail("Wateroverlast in de kelder")]
    dovecot.append(account, *sent)
    inbox = Inbox()
    options = dovecot.mailbox_options(account, after_import="move", move_to="Verwerkt")
    reader = make_reader(options, MemoryCursors(), inbox.deliver)

    assert await reader.sync_once() == 2

    assert inbox.mails == sent
    assert "Verwerkt" in dovecot.folders(account)
    assert dovecot.messages(account) == {}
    assert sorted(dovecot.messages(account, "Verwerkt").values()) == sorted(sent)
    dovecot.append(account, mail("Nog een"))
    assert await reader.sync_once() == 1
    assert len(dovecot.messages(account, "Verwerkt")) == 3


async def test_delete_mode_deletes_mail_but_keeps_what_was_too_large(
    dovecot: DovecotServer, account: Account, make_reader: ReaderFactory
) -> None:
    small, large = mail("Klein"), mail("Groot", body="x" * 8000 + "\r\n")
    dovecot.append(account, small, large)
    inbox = Inbox()
    options = dovecot.mailbox_options(account, after_import="delete")
    reader = make_reader(options, MemoryCursors(), inbox.deliver, max_message_bytes=4096)

    assert await reader.sync_once() == 2

    assert inbox.subjects == ["Klein", "Groot"]
    # Deleting the large one would lose the body that was never imported.
    assert dovecot.messages(account) == {2: large}
    assert dovecot.flags(account) == {2: MARKED}


# --- failures and crashes ---------------------------------------------------------------------


async def test_a_mail_whose_delivery_fails_stays_unmarked_and_comes_again_next_sync(
    dovecot: DovecotServer, account: Account, make_reader: ReaderFactory
) -> None:
    dovecot.append(account, mail("Eerste"), mail("Tweede"), mail("Derde"))
    cursors, inbox = MemoryCursors(), Inbox()
    inbox.failing = {"Tweede"}
    reader = make_reader(dovecot.mailbox_options(account), cursors, inbox.deliver)

    with pytest.raises(DeliveryFailed) as failed:
        await reader.sync_once()

    # A fetched batch is handed over at once: what was stored is marked, the failed one is not,
    # and the cursor stops before it.
    assert failed.value.uid == 2
    assert inbox.subjects == ["Eerste", "Derde"]
    assert dovecot.flags(account) == {1: MARKED, 2: set(), 3: MARKED}
    assert cursors.values[f"imap:{account.name}"]["last_uid"] == 1
    assert reader.status.consecutive_failures == 1
    assert reader.status.last_error is not None
    assert "storing" in reader.status.last_error
    assert metric("meldpunt_imap_failures_total", mailbox=account.name, reason="deliver") == 1

    inbox.failing.clear()
    assert await reader.sync_once() == 1

    assert inbox.subjects == ["Eerste", "Derde", "Tweede"]
    assert dovecot.flags(account) == {1: MARKED, 2: MARKED, 3: MARKED}
    assert reader.status.consecutive_failures == 0
    assert reader.status.last_error is None


async def test_crash_between_deliver_and_mark_delivers_the_same_bytes_once_more(
    dovecot: DovecotServer, account: Account, make_reader: ReaderFactory
) -> None:
    sent = mail("Bushokje vernield")
    dovecot.append(account, sent)
    options, cursors = dovecot.mailbox_options(account), MemoryCursors()
    stored_before_crash: list[bytes] = []

    async def store_then_die(raw: bytes) -> None:
        stored_before_crash.append(raw)
        raise ProcessKilled

    with pytest.raises(ProcessKilled):
        await make_reader(options, cursors, store_then_die).sync_once()
    assert stored_before_crash == [sent]
    assert dovecot.flags(account) == {1: set()}
    assert cursors.values == {}

    after_restart = Inbox()
    assert await make_reader(options, cursors, after_restart.deliver).sync_once() == 1
    assert after_restart.mails == stored_before_crash
    assert dovecot.flags(account) == {1: MARKED}

    later = Inbox()
    assert await make_reader(options, cursors, later.deliver).sync_once() == 0
    assert await make_reader(options, MemoryCursors(), later.deliver).sync_once() == 0
    assert later.mails == []


async def test_crash_after_mark_before_cursor_save_does_not_deliver_again(
    dovecot: DovecotServer, account: Account, make_reader: ReaderFactory
) -> None:
    dovecot.append(account, mail("Fietspad vol glas"))
    options = dovecot.mailbox_options(account)

    class DyingCursors(MemoryCursors):
        async def save(self, key: str, value: dict[str, Any]) -> None:
            raise ProcessKilled

    first = Inbox()
    with pytest.raises(ProcessKilled):
        await make_reader(options, DyingCursors(), first.deliver).sync_once()
    assert first.subjects == ["Fietspad vol glas"]
    assert dovecot.flags(account) == {1: MARKED}

    again = Inbox()
    assert await make_reader(options, MemoryCursors(), again.deliver).sync_once() == 0


# --- UIDs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("marks_survive", [True, False], ids=["marks-kept", "marks-lost"])
async def test_new_uidvalidity_reads_the_folder_again(
    dovecot: DovecotServer, account: Account, make_reader: ReaderFactory, marks_survive: bool
) -> None:
    dovecot.append(account, mail("Een"), mail("Twee"), mail("Drie"))
    cursors, inbox = MemoryCursors(), Inbox()
    reader = make_reader(dovecot.mailbox_options(account), cursors, inbox.deliver)
    assert await reader.sync_once() == 3
    old = dovecot.uidvalidity(account)
    dovecot.delete(account, [1, 2])

    new = dovecot.change_uidvalidity(account)

    assert new != old
    if not marks_survive:
        dovecot.remove_flags(account, [b"\\Seen", IMPORTED_KEYWORD])
    # "Vier" gets UID 2, below the old cursor's 3: only a fresh start finds it.
    assert dovecot.append(account, mail("Vier")) == [2]
    with structlog.testing.capture_logs() as logs:
        imported = await reader.sync_once()  # its old session is unusable now
    assert inbox.subjects[3:] == (["Vier"] if marks_survive else ["Drie", "Vier"])
    assert imported == len(inbox.subjects) - 3
    assert cursors.values[f"imap:{account.name}"] == {"uidvalidity": new, "last_uid": 2}
    assert any("UIDVALIDITY changed" in entry["event"] for entry in logs)


async def test_uid_range_quirk_does_not_deliver_the_newest_mail_again(
    dovecot: DovecotServer, account: Account, make_reader: ReaderFactory
) -> None:
    dovecot.append(account, mail("Een"), mail("Twee"))
    inbox = Inbox()
    reader = make_reader(dovecot.mailbox_options(account), MemoryCursors(), inbox.deliver)
    assert await reader.sync_once() == 2
    with dovecot.connect(account) as client:
        client.select_folder("INBOX", readonly=True)
        assert client.search(["UID", "3:*"]) == [2]  # the quirk, on this very server
    # Someone marks everything unread again: only the cursor stands between UID 2 and a re-import.
    dovecot.remove_flags(account, [b"\\Seen", IMPORTED_KEYWORD])

    assert await reader.sync_once() == 0
    dovecot.append(account, mail("Drie"))
    assert await reader.sync_once() == 1

    assert inbox.subjects == ["Een", "Twee", "Drie"]


async def test_a_backlog_is_read_in_chunks_in_order(
    dovecot: DovecotServer, account: Account, make_reader: ReaderFactory
) -> None:
    subjects = [f"Melding {n:03d}" for n in range(130)]
    dovecot.append(account, *(mail(s) for s in subjects))
    cursors, inbox = MemoryCursors(), Inbox()
    reader = make_reader(dovecot.mailbox_options(account), cursors, inbox.deliver)

    assert await reader.sync_once() == 130

    assert inbox.subjects == subjects
    assert cursors.values[f"imap:{account.name}"]["last_uid"] == 130


async def test_oversized_mail_is_delivered_as_its_header_with_a_note(
    dovecot: DovecotServer, account: Account, make_reader: ReaderFactory
) -> None:
    original = EmailMessage()
    original["From"] = "An Peeters <an.peeters@example.test>"
    original["To"] = "meldpunt@stad.example"
    original["Subject"] = "Foto's van de schade"
    original["Message-ID"] = "<schade-1@example.test>"
    original.set_content("Zie bijlage.")
    original.add_attachment(b"\xff" * 20_000, maintype="image", subtype="jpeg", filename="a.jpg")
    raw = original.as_bytes(policy=email.policy.SMTP)
    dovecot.append(account, raw)
    inbox = Inbox()
    reader = make_reader(
        dovecot.mailbox_options(account), MemoryCursors(), inbox.deliver, max_message_bytes=4096
    )

    assert await reader.sync_once() == 1

    [delivered] = inbox.mails
    message = email.message_from_bytes(delivered, policy=email.policy.default)
    assert message[TRUNCATED_HEADER] == str(len(raw))
    assert message["Subject"] == "Foto's van de schade"
    assert message["Message-ID"] == "<schade-1@example.test>"
    assert message.get_content_type() == "text/plain"
    assert not message.defects
    assert "groot, meer dan de" in message.get_content()
    assert len(delivered) < 4096
    assert dovecot.flags(account) == {1: MARKED}


# --- connecting --------------------------------------------------------------------------------


async def test_starttls_refused_by_the_server_never_sends_the_password(
    dovecot: DovecotServer, account: Account, make_reader: ReaderFactory
) -> None:
    options = dovecot.mailbox_options(account, tls="starttls")
    reader = make_reader(options, MemoryCursors(), Inbox().deliver)

    with pytest.raises(Exception, match="STARTTLS"):
        await reader.sync_once()

    assert reader.status.last_error is not None
    assert "STARTTLS" in reader.status.last_error
    assert f"user=<{account.user}>" not in dovecot.log.read_text()


async def test_wrong_password_keeps_retrying_and_says_login(
    own_dovecot: DovecotServer, make_reader: ReaderFactory
) -> None:
    account = own_dovecot.new_account()
    options = own_dovecot.mailbox_options(account, password="not-the-password")
    with structlog.testing.capture_logs() as logs:
        reader = make_reader(options, MemoryCursors(), Inbox().deliver, retry_initial_seconds=0.2)
        task = asyncio.create_task(reader.run())
        await eventually(
            lambda: reader.status.consecutive_failures >= 1 and reader.status.state == "retrying",
            "a failed login, then retrying",
        )

    assert not task.done()
    assert reader.status.last_error is not None
    assert "login" in reader.status.last_error
    assert "not-the-password" not in reader.status.last_error
    assert metric("meldpunt_imap_failures_total", mailbox=account.name, reason="login") >= 1
    assert any(e["event"].startswith("imap login failed; retrying in ") for e in logs)
    assert all("not-the-password" not in repr(entry) for entry in logs)
    assert await stop(task) < 3


# --- waiting for mail ---------------------------------------------------------------------------


async def test_idle_picks_up_new_mail_within_seconds(
    dovecot: DovecotServer, account: Account, make_reader: ReaderFactory
) -> None:
    inbox = Inbox()
    reader = make_reader(dovecot.mailbox_options(account), MemoryCursors(), inbox.deliver)
    task = asyncio.create_task(reader.run())
    await eventually(lambda: reader.status.state == "idle", "IDLE")

    dovecot.append(account, mail("Melding tijdens IDLE"))
    await asyncio.wait_for(inbox.arrived.wait(), timeout=10)

    assert inbox.subjects == ["Melding tijdens IDLE"]
    assert dovecot.flags(account) == {1: MARKED}
    await eventually(lambda: reader.status.state == "idle", "back to IDLE")
    # A sync asked for from outside takes the connection from IDLE at once, not in 25 minutes.
    started = time.monotonic()
    assert await asyncio.wait_for(reader.sync_once(), timeout=5) == 0
    assert time.monotonic() - started < 2.5
    assert await stop(task) < 3
    assert reader.status.state == "stopped"
    assert metric("meldpunt_imap_connected", mailbox=account.name) == 0


async def test_polling_mode_picks_up_new_mail(
    dovecot: DovecotServer, account: Account, make_reader: ReaderFactory
) -> None:
    inbox = Inbox()
    options = dovecot.mailbox_options(account, idle=False, poll_seconds=0.2)
    reader = make_reader(options, MemoryCursors(), inbox.deliver)
    task = asyncio.create_task(reader.run())
    await eventually(lambda: reader.status.state == "polling", "polling")

    dovecot.append(account, mail("Melding bij polling"))
    await asyncio.wait_for(inbox.arrived.wait(), timeout=10)

    assert inbox.subjects == ["Melding bij polling"]
    # close() without cancelling: run() notices and returns.
    await reader.close()
    await asyncio.wait_for(task, timeout=3)


async def test_idle_is_renewed_with_a_sync_each_time(
    dovecot: DovecotServer,
    account: Account,
    make_reader: ReaderFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(mailbox, "IDLE_RENEW_SECONDS", 0.3)
    cursors, inbox = CountingCursors(), Inbox()
    reader = make_reader(dovecot.mailbox_options(account), cursors, inbox.deliver)
    task = asyncio.create_task(reader.run())

    await eventually(lambda: cursors.loads >= 4, "three IDLE renewals, each followed by a sync")
    dovecot.append(account, mail("Na drie keer IDLE"))
    await asyncio.wait_for(inbox.arrived.wait(), timeout=10)

    assert inbox.subjects == ["Na drie keer IDLE"]
    assert reader.status.consecutive_failures == 0
    assert await stop(task) < 3


async def test_without_move_uidplus_and_idle_the_fallbacks_work(
    make_reader: ReaderFactory,
) -> None:
    with running_dovecot(extra_config="imap_capability = IMAP4rev1 SASL-IR LITERAL+\n") as server:
        moving, deleting = server.new_account(), server.new_account()
        server.append(moving, mail("Te verplaatsen"))
        server.append(deleting, mail("Te verwijderen"))
        inbox = Inbox()
        mover = make_reader(
            server.mailbox_options(moving, after_import="move", move_to="Verwerkt"),
            MemoryCursors(),
            inbox.deliver,
        )
        assert await mover.sync_once() == 1  # COPY, \Deleted, EXPUNGE
        assert server.messages(moving) == {}
        assert len(server.messages(moving, "Verwerkt")) == 1

        deleter = make_reader(
            server.mailbox_options(deleting, after_import="delete", idle=True, poll_seconds=0.2),
            MemoryCursors(),
            inbox.deliver,
        )
        task = asyncio.create_task(deleter.run())
        await eventually(lambda: deleter.status.state == "polling", "polling, as IDLE is missing")
        server.append(deleting, mail("Nog een"))
        await eventually(lambda: len(inbox.mails) == 3, "the mail appended while polling")
        assert server.messages(deleting) == {}
        assert await stop(task) < 3

    assert inbox.subjects == ["Te verplaatsen", "Te verwijderen", "Nog een"]


# --- TLS ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("tls", ["ssl", "starttls"])
async def test_tls_modes_with_a_trusted_certificate(
    tls: str, make_reader: ReaderFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_dovecot(tls=True) as server:
        account = server.new_account()
        server.append(account, mail("Over TLS"))
        # The reader trusts what the system trusts; OpenSSL reads this at each new context.
        monkeypatch.setenv("SSL_CERT_FILE", str(server.certificate))
        inbox = Inbox()
        reader = make_reader(
            server.mailbox_options(account, tls=tls), MemoryCursors(), inbox.deliver
        )

        assert await reader.sync_once() == 1
        await reader.close()
        logins = [
            line
            for line in server.log.read_text().splitlines()
            if f"Login: user=<{account.user}>" in line
        ]

    assert inbox.subjects == ["Over TLS"]
    assert ", TLS," in logins[-1]  # the reader's login, after the helper's plain one


async def test_an_untrusted_certificate_is_refused_before_login(
    make_reader: ReaderFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with running_dovecot(tls=True) as server:
        account = server.new_account()
        reader = make_reader(
            server.mailbox_options(account, tls="ssl"), MemoryCursors(), Inbox().deliver
        )

        with pytest.raises(ssl.SSLCertVerificationError):
            await reader.sync_once()
        log = server.log.read_text()

    assert reader.status.last_error is not None
    assert "certificate verify failed" in reader.status.last_error
    assert f"user=<{account.user}>" not in log


async def test_run_survives_a_server_restart(
    own_dovecot: DovecotServer, make_reader: ReaderFactory
) -> None:
    account = own_dovecot.new_account()
    inbox = Inbox()
    reader = make_reader(
        own_dovecot.mailbox_options(account),
        MemoryCursors(),
        inbox.deliver,
        retry_initial_seconds=0.2,
        retry_max_seconds=1.0,
    )
    task = asyncio.create_task(reader.run())
    await eventually(lambda: reader.status.state == "idle", "IDLE")

    own_dovecot.stop()
    await eventually(lambda: reader.status.state == "retrying", "retrying")
    # ...and at least one reconnect refused while the server is down.
    await eventually(lambda: reader.status.consecutive_failures >= 2, "a refused reconnect")
    assert metric("meldpunt_imap_connected", mailbox=account.name) == 0
    own_dovecot.start()
    own_dovecot.append(account, mail("Na de herstart"))
    await asyncio.wait_for(inbox.arrived.wait(), timeout=10)

    assert inbox.subjects == ["Na de herstart"]
    await eventually(lambda: reader.status.state == "idle", "back to IDLE")
    assert reader.status.consecutive_failures == 0
    assert not task.done()
    assert await stop(task) < 3
