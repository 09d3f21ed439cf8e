"""The e-mail channel end to end: the whole service against a real Dovecot and a real aiosmtpd.

Mail is appended to the town's mailbox as a mail server would; what the citizen gets back is
what aiosmtpd received. Configured through the sample configuration's IMAP_* and SMTP_*
variables, as an operator would.
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import hashlib
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient

from meldpunt.app import create_app
from store.db import Database
from store.models import (
    AttachmentRow,
    JournalEntry,
    Message,
    OutboxRow,
    Ticket,
    TicketEvent,
    table_of,
)
from store.outbox import OutboundDraft, queue_outbound
from tests.conftest import free_port
from tests.connectors.email.conftest import Account, DovecotServer, Recorder, Start, imap_env
from tests.service import RunningService, sample_config, start_server, until

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[Client]]

TOWN_ADDRESS = "contactpunt@wingene.example"
CITIZEN = "an.peeters@example.be"
FAST_DISPATCH = (
    "routing:\n  file:",
    "dispatch: {interval_seconds: 0.1, backoff_seconds: 0.2, backoff_max_seconds: 0.5}\n"
    "routing:\n  file:",
)


def mail(
    text: str,
    *,
    subject: str,
    sender: str = f"An Peeters <{CITIZEN}>",
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: str | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    """A citizen's mail as a mail program would write it."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = f"Contactpunt 1750 <{TOWN_ADDRESS}>"
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = message_id or make_msgid(domain="mail.example.be")
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = references
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(text)
    return msg.as_bytes()


def parsed(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


@dataclass
class Town(RunningService):
    """The running service with its mailbox and the SMTP server citizens' answers go through."""

    dovecot: DovecotServer
    account: Account
    smtp: Recorder

    def receive(self, *mails: bytes) -> None:
        self.dovecot.append(self.account, *mails)

    async def wait_for_mail(self, count: int) -> list[EmailMessage]:
        async def enough() -> bool:
            return len(self.smtp.received) >= count

        await until(enough, f"{count} mail(s) at the SMTP server")
        return [parsed(r.raw) for r in self.smtp.received]


def mail_env(monkeypatch: pytest.MonkeyPatch, dovecot: DovecotServer, account: Account) -> None:
    imap_env(monkeypatch, dovecot, account)
    for name, value in {
        "SMTP_TLS": "none",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_FROM": TOWN_ADDRESS,
    }.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
async def town(
    tmp_path: Path,
    database_url: str,
    aiohttp_client: ClientFactory,
    monkeypatch: pytest.MonkeyPatch,
    dovecot: DovecotServer,
    start_smtp: Start,
) -> Town:
    account = dovecot.new_account()
    recorder = Recorder()
    mail_env(monkeypatch, dovecot, account)
    monkeypatch.setenv("SMTP_PORT", str(await start_smtp(recorder)))
    config = sample_config(tmp_path, database_url, monkeypatch, replace=dict([FAST_DISPATCH]))
    client = await aiohttp_client(create_app(config, migrate=True))
    return Town(client, dovecot, account, recorder)


TICKETS = table_of(Ticket)
MESSAGES = table_of(Message)
EVENTS = table_of(TicketEvent)


async def test_a_mail_becomes_a_ticket_and_the_conversation_stays_on_it(town: Town) -> None:
    first_id = make_msgid(domain="mail.example.be")
    town.receive(
        mail(
            "Goedemiddag,\n\nDe straatlamp voor Kerkstraat 12 brandt al een week niet.\n\n"
            "Met vriendelijke groeten,\nAn Peeters\n",
            subject="Straatlamp kapot",
            message_id=first_id,
        )
    )
    [ticket] = await town.wait_for_rows(1, Ticket)
    assert ticket["reference"] == "1750-000001"
    assert ticket["department"] == "technical-service"
    assert (ticket["reply_channel"], ticket["reply_address"]) == ("email", CITIZEN)

    # The acknowledgement answers the citizen's mail, marked as automatic.
    [ack] = await town.wait_for_mail(1)
    assert ack["To"] == CITIZEN
    assert "[1750-000001]" in ack["Subject"]
    assert ack["In-Reply-To"] == first_id
    assert ack["Auto-Submitted"] == "auto-replied"
    ack_id = ack["Message-ID"]
    # The mailbox copy is marked as imported once it was stored.
    [flags] = town.dovecot.flags(town.account).values()
    assert "\\Seen" in flags
    ready = await (await town.client.get("/readyz")).json()
    assert ready["channels"]["email"] == "enabled"
    assert ready["checks"]["mailbox contactpunt"] in ("idle", "connected", "polling")

    # The citizen answers with Gmail's Dutch quote header under the new text.
    reply_id = make_msgid(domain="mail.example.be")
    town.receive(
        mail(
            "Hij brandt nog altijd niet, ook vandaag niet.\n\n"
            "Op ma 16 nov 2026 om 10:12 schreef Contactpunt 1750 <contactpunt@wingene.example>:\n"
            "> Bedankt. We hebben uw bericht goed ontvangen.\n",
            subject=f"Re: {ack['Subject']}",
            message_id=reply_id,
            in_reply_to=ack_id,
            references=f"{first_id} {ack_id}",
        )
    )
    incoming = await town.wait_for_rows(2, Message, MESSAGES.c.direction == "in")
    assert {m["ticket_id"] for m in incoming} == {ticket["id"]}
    assert incoming[1]["text"].strip() == "Hij brandt nog altijd niet, ook vandaag niet."
    assert "Op ma 16 nov 2026" in (incoming[1]["full_text"] or "")
    assert len(await town.rows(Ticket)) == 1

    # Staff answer through the API; the mail threads under the citizen's last one.
    token = await town.staff_token()
    response = await town.client.post(
        "/api/v1/tickets/1750-000001/replies",
        json={"text": "We sturen morgen een ploeg langs."},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status == 201, await response.text()
    answer = (await town.wait_for_mail(2))[1]
    assert answer["In-Reply-To"] == reply_id
    assert answer["References"].split() == [first_id, ack_id, reply_id]
    assert answer["Auto-Submitted"] is None
    body = answer.get_body(("plain",))
    assert body is not None and "We sturen morgen een ploeg langs." in body.get_content()
    [sent] = await town.wait_for_rows(
        1, Message, MESSAGES.c.direction == "out", MESSAGES.c.delivery_status == "sent",
        MESSAGES.c.author_user_id.is_not(None),
    )  # fmt: skip
    assert f"<{sent['external_id']}>" == answer["Message-ID"]


async def test_a_staff_reply_with_files_reaches_the_citizen_with_the_bytes_intact(
    town: Town,
) -> None:
    town.receive(mail("De stoeptegel voor nummer 4 ligt los.", subject="Stoeptegel"))
    await town.wait_for_mail(1)
    plan = b"%PDF-1.7\n" + bytes(range(256)) * 300
    photo = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(255, -1, -1)) * 40 + b"\xff\xd9"
    token = await town.staff_token()
    response = await town.client.post(
        "/api/v1/tickets/1750-000001/replies",
        json={
            "text": "In bijlage het plan en een foto van de herstelde stoep.",
            "attachments": [
                {
                    "filename": "Plan herstelling – Kerkstraat (één blad).pdf",
                    "content_type": "application/pdf",
                    "content_base64": base64.b64encode(plan).decode(),
                },
                {
                    "filename": "foto.jpg",
                    "content_type": "image/jpeg",
                    "content_base64": base64.b64encode(photo).decode(),
                },
            ],
        },
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status == 201, await response.text()

    answer = (await town.wait_for_mail(2))[1]
    assert answer.get_content_type() == "multipart/mixed"
    body = answer.get_body(("plain",))
    assert body is not None and "het plan en een foto" in body.get_content()
    assert [
        (part.get_filename(), part.get_content_type(), part.get_content())
        for part in answer.iter_attachments()
    ] == [
        ("Plan herstelling – Kerkstraat (één blad).pdf", "application/pdf", plan),
        ("foto.jpg", "image/jpeg", photo),
    ]
    await town.wait_for_rows(2, OutboxRow, table_of(OutboxRow).c.state == "sent")


async def test_a_reply_whose_file_is_gone_from_disk_fails_at_once_saying_so(town: Town) -> None:
    town.receive(mail("Wanneer wordt het gras gemaaid?", subject="Gras"))
    await town.wait_for_mail(1)
    [ticket] = await town.rows(Ticket)
    # As after a restore of the database without the data folder: the row names a file that is
    # not on disk.
    gone = hashlib.sha256(b"nooit opgeslagen").hexdigest()
    async with town.db.session() as session:
        [(message_id, _)] = await queue_outbound(
            await session.connection(),
            [OutboundDraft(ticket["id"], "email", CITIZEN, "Zie het maaischema.", "reply")],
            datetime.now(UTC),
        )
        session.add(
            AttachmentRow(
                message_id=message_id,
                filename="maaischema.pdf",
                content_type="application/pdf",
                size=100,
                sha256=gone,
            )
        )

    [failed] = await town.wait_for_rows(1, OutboxRow, table_of(OutboxRow).c.state == "failed")
    assert failed["message_id"] == message_id
    assert failed["attempts"] == 1
    assert "'maaischema.pdf' is missing from the attachment store" in failed["reason"]
    assert gone in failed["reason"]
    assert len(town.smtp.received) == 1


async def test_forwards_quotes_and_new_subjects_open_tickets_of_their_own(town: Town) -> None:
    first_id = make_msgid(domain="mail.example.be")
    town.receive(mail("Het afval werd niet opgehaald.", subject="Afval", message_id=first_id))
    [ack] = await town.wait_for_mail(1)

    town.receive(
        # A neighbour forwards the town's answer, thread headers and reference included.
        mail(
            "Zie hieronder, bij ons ook.\n\n---------- Forwarded message ---------\n...",
            subject=f"Fwd: {ack['Subject']}",
            sender="Piet Buur <piet@example.be>",
            references=f"{first_id} {ack['Message-ID']}",
            in_reply_to=ack["Message-ID"],
        ),
        # Someone else quotes the reference in a fresh mail.
        mail(
            "Over melding [1750-000001]: ik zag het ook.",
            subject="Ook afval [1750-000001]",
            sender="Mia <mia@example.be>",
        ),
        # The same citizen writes about something new.
        mail("Er ligt een gat in het fietspad.", subject="Put in fietspad"),
    )
    tickets = await town.wait_for_rows(4, Ticket)
    assert [t["reference"] for t in tickets] == [f"1750-00000{n}" for n in range(1, 5)]
    first = await town.rows(Message, MESSAGES.c.ticket_id == tickets[0]["id"])
    assert [m["direction"] for m in first] == ["in", "out"]


async def test_a_bounce_marks_the_answer_failed_and_opens_no_ticket(town: Town) -> None:
    town.receive(mail("Mijn identiteitskaart is verlopen.", subject="Identiteitskaart"))
    [ack] = await town.wait_for_mail(1)
    await town.wait_for_rows(1, OutboxRow, table_of(OutboxRow).c.state == "sent")

    town.receive(bounce_for(ack))
    [failed] = await town.wait_for_rows(1, OutboxRow, table_of(OutboxRow).c.state == "failed")
    assert "5.1.1" in (failed["reason"] or "")
    [event] = await town.wait_for_rows(1, TicketEvent, EVENTS.c.type == "delivery_failed")
    assert "5.1.1" in event["data"]["detail"]
    assert len(await town.rows(Ticket)) == 1
    [out] = await town.rows(Message, MESSAGES.c.direction == "out")
    assert out["delivery_status"] == "failed"


def bounce_for(original: EmailMessage) -> bytes:
    """A Postfix-style delivery status notification for ``original``."""
    boundary = "=_bounce_4711"
    headers = "".join(
        f"{k}: {v}\r\n" for k, v in original.items() if k in ("From", "To", "Subject", "Message-ID")
    )
    return (
        "From: MAILER-DAEMON@mail.example.be (Mail Delivery System)\r\n"
        f"To: {TOWN_ADDRESS}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: {make_msgid(domain='mail.example.be')}\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n'
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
        "I'm sorry to have to inform you that your message could not be delivered.\r\n\r\n"
        f"--{boundary}\r\n"
        "Content-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mail.example.be\r\n\r\n"
        f"Final-Recipient: rfc822; {CITIZEN}\r\n"
        "Action: failed\r\n"
        "Status: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 <an.peeters@example.be>: Recipient address rejected\r\n"
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Type: text/rfc822-headers\r\n\r\n"
        f"{headers}\r\n"
        f"--{boundary}--\r\n"
    ).encode()


async def test_an_out_of_office_reply_gets_no_acknowledgement(town: Town) -> None:
    town.receive(
        mail(
            "Ik ben afwezig tot 1 december.",
            subject="Afwezig: uw bericht",
            sender="Jan <jan@example.be>",
            headers={"Auto-Submitted": "auto-replied"},
        ),
        mail("Wanneer is het containerpark open?", subject="Containerpark"),
    )
    tickets = await town.wait_for_rows(2, Ticket)
    [ack] = await town.wait_for_mail(1)
    await asyncio.sleep(0.5)  # time enough for a wrong second acknowledgement to go out
    assert ack["To"] == CITIZEN and len(town.smtp.received) == 1
    [skipped] = await town.rows(TicketEvent, EVENTS.c.type == "acknowledgement_skipped")
    assert skipped["ticket_id"] == tickets[0]["id"]


async def test_mail_that_cannot_be_read_is_quarantined_and_the_mailbox_goes_on(town: Town) -> None:
    town.receive(b"\x00\x01\x02", mail("De bank aan de kerk is stuk.", subject="Bank"))
    await town.wait_for_rows(1, Ticket)
    [entry] = await town.wait_for_rows(
        1, JournalEntry, table_of(JournalEntry).c.state == "quarantined"
    )
    # Kept exactly as the server handed it over (Dovecot stores a NUL byte as 0x80).
    first_uid = min(town.dovecot.messages(town.account))
    assert entry["payload"] == town.dovecot.messages(town.account)[first_uid]
    assert entry["error"] == "no e-mail headers found: these bytes are not a mail"


async def test_an_smtp_outage_delays_the_acknowledgement_and_loses_nothing(
    aiohttp_client: ClientFactory,
    tmp_path: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    dovecot: DovecotServer,
    start_smtp: Start,
) -> None:
    account = dovecot.new_account()
    mail_env(monkeypatch, dovecot, account)
    recorder = Recorder()
    down = free_port()
    monkeypatch.setenv("SMTP_PORT", str(down))
    config = sample_config(tmp_path, database_url, monkeypatch, replace=dict([FAST_DISPATCH]))
    town = Town(await aiohttp_client(create_app(config, migrate=True)), dovecot, account, recorder)
    town.receive(mail("Hond loopt los in het park.", subject="Loslopende hond"))

    [retrying] = await town.wait_for_rows(1, OutboxRow, table_of(OutboxRow).c.attempts >= 2)
    assert retrying["state"] in ("pending", "sending")
    assert town.smtp.received == []

    # The mail server comes back on the same port: the waiting acknowledgement goes out once.
    await start_smtp(recorder, port=down)
    [ack] = await town.wait_for_mail(1)
    assert ack["To"] == CITIZEN and "[1750-000001]" in ack["Subject"]
    await town.wait_for_rows(1, OutboxRow, table_of(OutboxRow).c.state == "sent")
    await asyncio.sleep(0.5)
    assert len(recorder.received) == 1


# --- a killed process -------------------------------------------------------------------------


async def test_a_process_killed_while_importing_imports_every_mail_exactly_once(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, dovecot: DovecotServer
) -> None:
    account = dovecot.new_account()
    mail_env(monkeypatch, dovecot, account)
    monkeypatch.delenv("SMTP_HOST")  # acknowledgements wait in the outbox; not the point here
    config = sample_config(tmp_path, database_url, monkeypatch)
    db = Database(database_url)

    async def count(sql: str) -> int:
        async with db.engine.connect() as conn:
            return int((await conn.execute(sa.text(sql))).scalar_one())

    total = 150
    dovecot.append(
        account,
        *(
            mail(f"Melding {n}: zwerfvuil langs de Beernemstraat.", subject=f"Zwerfvuil {n}",
                 message_id=f"<kill-{n:04d}@mail.example.be>")
            for n in range(total)
        ),
    )  # fmt: skip
    env = {**os.environ}
    port = free_port()
    proc = await start_server(config.config_file, port, env)
    kills = 0
    try:
        # Kill it twice while it is importing: somewhere between storing and flagging.
        for threshold in (20, 70):

            async def imported(at_least: int = threshold) -> bool:
                return await count("SELECT count(*) FROM tickets") >= at_least

            await until(imported, f"{threshold} tickets", within=30)
            proc.kill()
            await proc.wait()
            kills += 1
            proc = await start_server(config.config_file, port, env)

        async def all_imported() -> bool:
            return await count("SELECT count(*) FROM tickets") >= total

        await until(all_imported, f"all {total} mails imported", within=60)
        await asyncio.sleep(1)  # anything imported twice would show up by now
        assert kills == 2
        assert await count("SELECT count(*) FROM tickets") == total
        assert (
            await count("SELECT count(DISTINCT external_id) FROM messages WHERE direction = 'in'")
            == total
        )
        assert await count("SELECT count(*) FROM messages WHERE direction = 'in'") == total
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        await db.close()
    flags = dovecot.flags(account)
    assert len(flags) == total and all("\\Seen" in f for f in flags.values())


async def test_a_mailbox_that_refuses_the_login_shows_in_readyz_and_the_rest_keeps_working(
    aiohttp_client: ClientFactory,
    tmp_path: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    own_dovecot: DovecotServer,
) -> None:
    account = own_dovecot.new_account()
    mail_env(monkeypatch, own_dovecot, account)
    monkeypatch.setenv("IMAP_PASSWORD", "verkeerd-wachtwoord")
    monkeypatch.delenv("SMTP_HOST")
    config = sample_config(tmp_path, database_url, monkeypatch)
    client = await aiohttp_client(create_app(config, migrate=True))
    checks: dict[str, str] = {}

    async def retrying() -> bool:
        nonlocal checks
        response = await client.get("/readyz")
        assert response.status == 200  # the web form and the API are still there
        checks = (await response.json())["checks"]
        return checks.get("mailbox contactpunt", "").startswith("retrying")

    await until(retrying, "the mailbox reported as retrying")
    assert "login" in checks["mailbox contactpunt"]
    assert "verkeerd-wachtwoord" not in checks["mailbox contactpunt"]
    form = await client.post(
        "/contact",
        json={
            "kind": "question",
            "message": "Wanneer is het recyclagepark open?",
            "email": CITIZEN,
        },
    )
    assert form.status == 201
