"""Facebook Messenger end to end: the whole service, Meta's signed webhooks, a fake Graph API.

Configured through the sample configuration's FACEBOOK_* variables, as an operator would; what the
citizen gets back is what the fake Send API recorded.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient

from connectors.messenger.connector import MessengerConnector
from ingest.model import Channel
from meldpunt.app import RUNTIME, create_app
from store.models import (
    ContactIdentity,
    JournalEntry,
    Message,
    OutboxRow,
    Ticket,
    TicketEvent,
    table_of,
)
from tests.connectors.email.conftest import Recorder, Start
from tests.connectors.messenger.conftest import (
    APP_SECRET,
    PAGE_TOKEN,
    PSID,
    VERIFY_TOKEN,
    FakeGraph,
    fixture,
    graph_error,
    message,
    now_ms,
    signed,
)
from tests.service import RunningService, sample_config, until

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[Client]]

PUBLIC_URL = "https://meldpunt.wingene.example"
WEBHOOK = "/webhooks/facebook"
FAST_DISPATCH = (
    "routing:\n  file:",
    "dispatch: {interval_seconds: 0.05, backoff_seconds: 0.1, backoff_max_seconds: 0.2}\n"
    "routing:\n  file:",
)
TEXT_MID = "m_Wq3kz8vYl2p0cXr1sNfTbHq9uDmE4aJ6oGi7yLw5tKe2RhVnC8xB1dZ0fMsPjQ"
CITIZEN_EMAIL = "marie.claes@example.be"

MESSAGES = table_of(Message)
OUTBOX = table_of(OutboxRow)
EVENTS = table_of(TicketEvent)
JOURNAL = table_of(JournalEntry)


@dataclass
class Town(RunningService):
    """The running service with the fake Graph API its answers go to."""

    graph: FakeGraph

    async def post(self, payload: dict[str, Any] | bytes, *, secret: str = APP_SECRET) -> Any:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return await self.client.post(WEBHOOK, data=body, headers=signed(body, secret))

    async def wait_for_sent(self, count: int) -> list[Any]:
        async def enough() -> bool:
            return len(self.graph.sent()) >= count

        await until(enough, f"{count} message(s) accepted by the Send API")
        return self.graph.sent()

    async def reply(self, reference: str, text: str, **extra: Any) -> None:
        response = await self.client.post(
            f"/api/v1/tickets/{reference}/replies",
            json={"text": text, **extra},
            headers={"Authorization": f"Bearer {await self.staff_token()}"},
        )
        assert response.status == 201, await response.text()

    async def age_inbound(self, hours: float) -> None:
        """Move every inbound message back in time, as if the citizen wrote long ago."""
        async with self.db.engine.begin() as conn:
            for mid, created in (
                await conn.execute(
                    sa.select(MESSAGES.c.id, MESSAGES.c.created_at).where(
                        MESSAGES.c.direction == "in"
                    )
                )
            ).all():
                await conn.execute(
                    sa.update(MESSAGES)
                    .where(MESSAGES.c.id == mid)
                    .values(created_at=created - timedelta(hours=hours))
                )

    async def ticket_detail(self, reference: str = "1750-000001") -> Any:
        response = await self.client.get(
            f"/api/v1/tickets/{reference}",
            headers={"Authorization": f"Bearer {await self.staff_token()}"},
        )
        assert response.status == 200
        return await response.json()


def messenger_env(monkeypatch: pytest.MonkeyPatch, fake: FakeGraph) -> None:
    for name, value in {
        "MELDPUNT_PUBLIC_URL": PUBLIC_URL,
        "FACEBOOK_APP_SECRET": APP_SECRET,
        "FACEBOOK_VERIFY_TOKEN": VERIFY_TOKEN,
        "FACEBOOK_PAGE_TOKEN": PAGE_TOKEN,
        "FACEBOOK_GRAPH_BASE": fake.base,
    }.items():
        monkeypatch.setenv(name, value)


StartTown = Callable[..., Awaitable[Town]]


@pytest.fixture
def start_town(
    tmp_path: Path,
    database_url: str,
    aiohttp_client: ClientFactory,
    monkeypatch: pytest.MonkeyPatch,
    fake_graph: FakeGraph,
) -> StartTown:
    async def start(env: dict[str, str] | None = None, **replace: str) -> Town:
        messenger_env(monkeypatch, fake_graph)
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        config = sample_config(
            tmp_path, database_url, monkeypatch, replace=dict([FAST_DISPATCH], **replace)
        )
        client = await aiohttp_client(create_app(config, migrate=True))
        return Town(client, fake_graph)

    return start


@pytest.fixture
async def town(start_town: StartTown) -> Town:
    return await start_town()


async def nothing_stored(town: Town) -> None:
    assert await town.rows(JournalEntry) == []
    assert await town.rows(Message) == []
    assert await town.rows(Ticket) == []


# --- the handshake and the signature --------------------------------------------------------------


async def test_the_handshake_echoes_the_challenge_for_the_verify_token(town: Town) -> None:
    query = {
        "hub.mode": "subscribe",
        "hub.verify_token": VERIFY_TOKEN,
        "hub.challenge": "1158201444",
    }
    response = await town.client.get(WEBHOOK, params=query)
    assert response.status == 200
    assert response.content_type == "text/plain"
    assert await response.text() == "1158201444"


@pytest.mark.parametrize(
    "query",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "guessed", "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN[:-1], "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
        {"hub.challenge": "1"},
    ],
)
async def test_a_handshake_without_the_verify_token_is_refused(
    town: Town, query: dict[str, str]
) -> None:
    response = await town.client.get(WEBHOOK, params=query)
    assert response.status == 403
    assert "1" not in await response.text()


@pytest.mark.parametrize("problem", ["bad", "missing", "other secret", "body changed", "no prefix"])
async def test_a_webhook_without_a_valid_signature_is_refused_and_nothing_stored(
    town: Town, problem: str
) -> None:
    body = json.dumps(fixture("text")).encode()
    headers = signed(body)
    if problem == "bad":
        headers["X-Hub-Signature-256"] = "sha256=" + "0" * 64
    elif problem == "missing":
        del headers["X-Hub-Signature-256"]
    elif problem == "other secret":
        headers = signed(body, "f" * 32)
    elif problem == "body changed":
        body = body.replace(b"Kerkstraat 12", b"Kerkstraat 13")
    else:
        headers["X-Hub-Signature-256"] = headers["X-Hub-Signature-256"].removeprefix("sha256=")
    response = await town.client.post(WEBHOOK, data=body, headers=headers)
    assert response.status == 403
    await nothing_stored(town)


# --- messages in ----------------------------------------------------------------------------------


async def test_a_message_becomes_a_ticket_and_is_acknowledged_on_messenger(town: Town) -> None:
    payload = fixture("text")
    written = payload["entry"][0]["messaging"][0]["timestamp"]
    response = await town.post(payload)
    assert response.status == 200

    [ticket] = await town.rows(Ticket)
    assert ticket["reference"] == "1750-000001"
    assert (ticket["origin_channel"], ticket["reply_channel"]) == ("messenger", "messenger")
    assert ticket["reply_address"] == PSID
    assert ticket["conversation"] == f"messenger:{PSID}"
    [incoming] = await town.rows(Message, MESSAGES.c.direction == "in")
    assert incoming["external_id"] == TEXT_MID
    assert incoming["text"] == "Er ligt al een week een stapel grofvuil aan de Kerkstraat 12."
    assert incoming["sender"] == PSID
    assert int(incoming["created_at"].timestamp() * 1000) == written
    [identity] = await town.rows(ContactIdentity)
    assert (identity["kind"], identity["value"]) == ("messenger", PSID)
    [entry] = await town.rows(JournalEntry)
    assert (entry["state"], entry["payload"]) == ("processed", json.dumps(payload).encode())

    [ack] = await town.wait_for_sent(1)
    assert ack.query["access_token"] == PAGE_TOKEN
    [row] = await town.wait_for_rows(1, OutboxRow, OUTBOX.c.state == "sent")
    assert ack.body == {
        "recipient": {"id": PSID},
        "messaging_type": "RESPONSE",
        "message": {"text": row["body"], "metadata": f"meldpunt:outbox:{row['id']}"},
    }
    assert "1750-000001" in row["body"]
    assert row["provider_id"] == ack.message_id
    ready = await (await town.client.get("/readyz")).json()
    assert ready["channels"]["messenger"] == "enabled"


async def test_a_redelivered_webhook_is_stored_once(town: Town) -> None:
    payload = fixture("text")
    for _ in range(2):
        assert (await town.post(payload)).status == 200
    assert len(await town.rows(Message, MESSAGES.c.direction == "in")) == 1
    assert [j["state"] for j in await town.rows(JournalEntry)] == ["processed", "duplicate"]


async def test_a_batch_of_two_entries_with_two_messages_each_stores_all_four(town: Town) -> None:
    payload = fixture("batch")
    response = await town.post(payload)
    assert response.status == 200
    incoming = await town.rows(Message, MESSAGES.c.direction == "in")
    assert [m["text"] for m in incoming] == [
        "De straatlamp voor nummer 4 is stuk.",
        "Al sinds vrijdag.",
        "Wanneer is het containerpark open?",
        "Ook op zaterdag?",
    ]
    # Two citizens, each a ticket with both their messages.
    tickets = await town.rows(Ticket)
    assert sorted(t["reply_address"] for t in tickets) == ["6543210987654321", "7788990011223344"]
    assert {m["ticket_id"] for m in incoming[:2]} != {m["ticket_id"] for m in incoming[2:]}
    assert len({m["ticket_id"] for m in incoming}) == 2
    # Each journal row holds its own event, readable alone.
    journal = await town.rows(JournalEntry)
    assert [j["state"] for j in journal] == ["processed"] * 4
    for entry, expected in zip(journal, incoming, strict=True):
        alone = json.loads(entry["payload"])
        [event] = alone["entry"][0]["messaging"]
        assert event["message"]["mid"] == expected["external_id"]
    # The same batch again: nothing new.
    assert (await town.post(payload)).status == 200
    assert len(await town.rows(Message, MESSAGES.c.direction == "in")) == 4


async def test_files_are_fetched_and_kept_within_limits(start_town: StartTown) -> None:
    town = await start_town(**{"max_attachment_bytes: 26214400": "max_attachment_bytes: 4096"})
    photo = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8
    pdf = b"%PDF-1.7\n" + b"x" * 100 + b"\n%%EOF\n"
    town.graph.files = {
        "/v/t1.15752-9/468222111_1207441590343214_8812734451230987654_n.jpg": ("image/jpeg", photo),
        "/v/t59.2708-21/468001234_1122334455667788_1029384756_n.pdf/Aanvraag parkeerkaart.pdf": (
            "application/pdf",
            pdf,
        ),
        "/v/t42.3356-2/467999888_9988776655443322_1122334455_n.mp4": ("video/mp4", b"v" * 5000),
        "/v/t59.2708-21/468005555_5566778899001122_5647382910_n.exe/setup.exe": (
            "application/x-msdownload",
            b"MZ",
        ),
    }
    response = await town.post(fixture("image", cdn=town.graph.base))
    assert response.status == 200
    [message] = (await town.ticket_detail())["messages"][:1]
    assert message["text"] == "Hier een foto en het formulier."
    assert [(a["filename"], a["size"], a["removed_reason"]) for a in message["attachments"]] == [
        ("468222111_1207441590343214_8812734451230987654_n.jpg", len(photo), None),
        ("Aanvraag parkeerkaart.pdf", len(pdf), None),
        ("467999888_9988776655443322_1122334455_n.mp4", 5000, "larger than 4096 bytes"),
        ("setup.exe", 0, "file type application/x-msdownload is not accepted"),
        ("audioclip-1794822190000-4021.mp4", 0, "could not be downloaded from Meta (HTTP 404)"),
    ]
    files = town.client.app[RUNTIME].files
    assert await files.get(message["attachments"][0]["sha256"]) == photo
    assert await files.get(message["attachments"][1]["sha256"]) == pdf


async def test_a_shared_location_sets_the_tickets_location(town: Town) -> None:
    assert (await town.post(fixture("location"))).status == 200
    [ticket] = await town.rows(Ticket)
    assert (ticket["location_lat"], ticket["location_lon"]) == (51.0631, 3.2729)
    assert ticket["location_address"] == "Gemeentehuis Wingene"


async def test_a_quick_reply_and_a_button_set_the_kind(town: Town) -> None:
    assert (await town.post(fixture("quick_reply"))).status == 200
    [ticket] = await town.rows(Ticket)
    assert (ticket["kind"], ticket["subject"]) == ("complaint", "Klacht")

    async with town.db.engine.begin() as conn:
        await conn.execute(sa.update(table_of(Ticket)).values(status="closed"))
    assert (await town.post(fixture("postback"))).status == 200
    [_, pressed] = await town.rows(Ticket)
    assert (pressed["kind"], pressed["subject"]) == ("report", "Melding maken")
    [button] = await town.rows(
        Message, MESSAGES.c.ticket_id == pressed["id"], MESSAGES.c.direction == "in"
    )
    assert button["external_id"].startswith("m_Pb7aC6kB5")


async def test_a_button_press_without_a_message_id_is_still_stored_once(town: Town) -> None:
    payload = fixture("postback")
    del payload["entry"][0]["messaging"][0]["postback"]["mid"]
    for _ in range(2):
        assert (await town.post(payload)).status == 200
    [pressed] = await town.rows(Message, MESSAGES.c.direction == "in")
    assert pressed["external_id"].startswith(f"postback:{PSID}:")
    assert [j["state"] for j in await town.rows(JournalEntry)] == ["processed", "duplicate"]


async def test_an_edit_is_added_to_the_message(town: Town) -> None:
    await town.post(fixture("text"))
    assert (await town.post(fixture("edit"))).status == 200
    [incoming] = await town.rows(Message, MESSAGES.c.direction == "in")
    assert incoming["text"].startswith(
        "Er ligt al een week een stapel grofvuil aan de Kerkstraat 12."
    )
    assert "Kerkstraat 21" in incoming["text"]
    assert len(await town.rows(Ticket)) == 1


# --- what is no message ---------------------------------------------------------------------------


async def test_echoes_are_journalled_as_ignored_and_open_no_ticket(town: Town) -> None:
    ours = fixture("echo")
    theirs = fixture("echo")
    event = theirs["entry"][0]["messaging"][0]["message"]
    del event["metadata"]
    event["mid"] = "m_typed-in-business-suite"
    for payload in (ours, theirs):
        assert (await town.post(payload)).status == 200
    assert await town.rows(Ticket) == []
    assert await town.rows(Message) == []
    journal = await town.rows(JournalEntry)
    assert [j["state"] for j in journal] == ["ignored", "ignored"]
    assert journal[0]["external_id"].startswith("echo:m_Ec8hO7")
    assert "meldpunt's own answer" in journal[0]["error"]
    assert "outside meldpunt" in journal[1]["error"]


async def test_deliveries_and_reads_update_the_answer_and_open_no_ticket(town: Town) -> None:
    await town.post(fixture("text"))
    [ack] = await town.wait_for_rows(1, OutboxRow, OUTBOX.c.state == "sent")
    mid = ack["provider_id"]

    delivery = fixture("delivery")
    delivery["entry"][0]["messaging"][0]["delivery"]["mids"] = [mid]
    assert (await town.post(delivery)).status == 200
    [answer] = await town.rows(Message, MESSAGES.c.external_id == mid)
    assert answer["delivery_status"] == "delivered"

    # A read receipt names no message, only a moment: everything sent before it was read.
    assert (await town.post(fixture("read", at=now_ms() + 1000))).status == 200
    [answer] = await town.rows(Message, MESSAGES.c.external_id == mid)
    assert answer["delivery_status"] == "read"
    # Read again later: nothing new to report, nothing journalled for it.
    before = len(await town.rows(JournalEntry))
    assert (await town.post(fixture("read", at=now_ms() + 2000))).status == 200
    assert len(await town.rows(JournalEntry)) == before

    assert len(await town.rows(Ticket)) == 1
    assert len(await town.rows(Message, MESSAGES.c.direction == "in")) == 1
    states = [j["state"] for j in await town.rows(JournalEntry)]
    assert states == ["processed", "delivery", "delivery"]


async def test_a_delivery_without_ids_is_read_from_its_watermark(town: Town) -> None:
    await town.post(fixture("text"))
    [ack] = await town.wait_for_rows(1, OutboxRow, OUTBOX.c.state == "sent")
    delivery = fixture("delivery", at=now_ms() + 1000)
    del delivery["entry"][0]["messaging"][0]["delivery"]["mids"]
    assert (await town.post(delivery)).status == 200
    [answer] = await town.rows(Message, MESSAGES.c.external_id == ack["provider_id"])
    assert answer["delivery_status"] == "delivered"


async def test_a_reaction_is_journalled_as_ignored(town: Town) -> None:
    assert (await town.post(fixture("reaction"))).status == 200
    [entry] = await town.rows(JournalEntry)
    assert entry["state"] == "ignored"
    assert "reacted ❤️" in entry["error"]
    assert await town.rows(Ticket) == []


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{not json", "not JSON"),
        (json.dumps({"object": "instagram", "entry": []}).encode(), '"instagram"'),
        (json.dumps({"object": "page"}).encode(), "no list of entries"),
    ],
)
async def test_a_body_that_is_no_messenger_webhook_is_quarantined_and_answered(
    town: Town, body: bytes, error: str
) -> None:
    response = await town.post(body)
    assert response.status == 200
    [entry] = await town.rows(JournalEntry)
    assert entry["state"] == "quarantined"
    assert error in entry["error"]
    assert entry["payload"] == body
    assert await town.rows(Ticket) == []


async def test_an_unknown_event_is_quarantined_and_the_others_in_the_batch_kept(
    town: Town,
) -> None:
    payload = fixture("batch")
    payload["entry"][1]["messaging"][0] = {
        "sender": {"id": "7788990011223344"},
        "recipient": {"id": "104857600000001"},
        "timestamp": now_ms(),
        "hologram": {"shape": "cube"},
    }
    payload["entry"][0]["messaging"][1]["message"] = {"text": "no mid"}
    assert (await town.post(payload)).status == 200
    assert len(await town.rows(Message, MESSAGES.c.direction == "in")) == 2
    quarantined = await town.rows(JournalEntry, JOURNAL.c.state == "quarantined")
    assert sorted(q["error"] for q in quarantined) == [
        "a Messenger message event: the message has no mid",
        "an unknown kind of Messenger event (keys: hologram, timestamp)",
    ]


async def test_intake_down_answers_503_so_meta_retries(town: Town) -> None:
    await town.client.app[RUNTIME].intake.stop()
    response = await town.post(fixture("text"))
    assert response.status == 503
    assert await town.rows(Ticket) == []


# --- answers out ----------------------------------------------------------------------------------


async def test_a_long_answer_goes_in_pieces_and_a_retry_repeats_none_of_them(town: Town) -> None:
    await town.post(fixture("text"))
    await town.wait_for_sent(1)
    paragraph = " ".join(["De technische dienst haalt het grofvuil morgen op."] * 30)
    text = f"{paragraph}\n\n{paragraph}\n\n{paragraph}"
    assert len(text) > 4000
    # Call 1 was the acknowledgement; the answer's second piece (call 3) meets the rate limit.
    town.graph.fail_at[3] = graph_error(613, "Calls to this api have exceeded the rate limit.")
    await town.reply("1750-000001", text)
    [_, row] = await town.wait_for_rows(2, OutboxRow, OUTBOX.c.state == "sent")
    assert [c.answer for c in town.graph.calls] == [200, 200, 400, 200, 200]
    pieces = town.graph.texts()[1:]
    assert pieces == [paragraph] * 3
    assert row["attempts"] == 2
    # Stored under the last piece's id, which Meta's receipts for any piece map back to.
    assert row["provider_id"] == town.graph.sent()[-1].message_id
    delivery = fixture("delivery")
    delivery["entry"][0]["messaging"][0]["delivery"]["mids"] = [town.graph.sent()[1].message_id]
    assert (await town.post(delivery)).status == 200
    [answer] = await town.rows(Message, MESSAGES.c.id == row["message_id"])
    assert answer["delivery_status"] == "delivered"


async def test_a_reply_with_files_uploads_each_after_the_text(town: Town) -> None:
    await town.post(fixture("text"))
    await town.wait_for_sent(1)
    photo = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 4 + b"\xff\xd9"
    pdf = b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
    await town.reply(
        "1750-000001",
        "In bijlage de foto en het formulier.",
        attachments=[
            {
                "filename": "stoep.jpg",
                "content_type": "image/jpeg",
                "content_base64": base64.b64encode(photo).decode(),
            },
            {
                "filename": "formulier.pdf",
                "content_type": "application/pdf",
                "content_base64": base64.b64encode(pdf).decode(),
            },
        ],
    )
    [_, text, image, document] = await town.wait_for_sent(4)
    [row] = await town.wait_for_rows(
        1, OutboxRow, OUTBOX.c.purpose == "reply", OUTBOX.c.state == "sent"
    )
    metadata = f"meldpunt:outbox:{row['id']}"
    assert text.body["message"] == {
        "text": "In bijlage de foto en het formulier.",
        "metadata": metadata,
    }
    assert image.body == {
        "recipient": {"id": PSID},
        "messaging_type": "RESPONSE",
        "message": {
            "attachment": {"type": "image", "payload": {"is_reusable": False}},
            "metadata": metadata,
        },
    }
    assert image.files == {"filedata": ("stoep.jpg", "image/jpeg", photo)}
    assert document.body["message"]["attachment"]["type"] == "file"
    assert document.files == {"filedata": ("formulier.pdf", "application/pdf", pdf)}
    assert row["provider_id"] == document.message_id


# --- the 24-hour window ---------------------------------------------------------------------------


async def test_after_a_day_a_staff_answer_goes_with_the_human_agent_tag(town: Town) -> None:
    await town.post(fixture("text"))
    await town.wait_for_sent(1)
    await town.age_inbound(30)
    await town.reply("1750-000001", "We hebben het grofvuil opgehaald.")
    [_, answer] = await town.wait_for_sent(2)
    [row] = await town.wait_for_rows(
        1, OutboxRow, OUTBOX.c.purpose == "reply", OUTBOX.c.state == "sent"
    )
    assert answer.body == {
        "recipient": {"id": PSID},
        "messaging_type": "MESSAGE_TAG",
        "tag": "HUMAN_AGENT",
        "message": {
            "text": "We hebben het grofvuil opgehaald.",
            "metadata": f"meldpunt:outbox:{row['id']}",
        },
    }


async def test_without_the_tag_after_a_day_the_answer_waits_for_the_citizen(
    start_town: StartTown,
) -> None:
    town = await start_town(**{"human_agent_tag: true": "human_agent_tag: false"})
    await town.post(fixture("text"))
    await town.wait_for_sent(1)
    await town.age_inbound(30)
    await town.reply("1750-000001", "We hebben het grofvuil opgehaald.")
    [row] = await town.wait_for_rows(1, OutboxRow, OUTBOX.c.state == "waiting")
    assert row["reason"] == "waiting for the citizen to write again on Facebook Messenger"
    assert len(town.graph.calls) == 1
    [event] = await town.rows(TicketEvent, EVENTS.c.type == "reply_window_closed")
    assert (event["data"]["action"], event["data"]["channel"]) == ("waiting", "messenger")


async def test_after_a_week_the_answer_goes_by_email_when_the_citizen_has_an_address(
    start_town: StartTown, start_smtp: Start
) -> None:
    mail = Recorder()
    port = await start_smtp(mail)
    town = await start_town(
        env={
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(port),
            "SMTP_TLS": "none",
            "SMTP_FROM": "contactpunt@wingene.example",
        }
    )
    await town.post(fixture("text"))
    await town.wait_for_sent(1)
    [ticket] = await town.rows(Ticket)
    async with town.db.engine.begin() as conn:
        await conn.execute(
            sa.insert(table_of(ContactIdentity)).values(
                contact_id=ticket["contact_id"], kind="email", value=CITIZEN_EMAIL
            )
        )
    await town.age_inbound(8 * 24)
    await town.reply("1750-000001", "Uw aanvraag voor een parkeerkaart is goedgekeurd.")
    [row] = await town.wait_for_rows(
        1, OutboxRow, OUTBOX.c.purpose == "reply", OUTBOX.c.state == "sent"
    )
    assert (row["channel"], row["recipient"]) == ("email", CITIZEN_EMAIL)
    assert row["reason"] == "Messenger window closed: sent by e-mail instead"
    assert [m.rcpt_tos for m in mail.received] == [[CITIZEN_EMAIL]]
    assert b"parkeerkaart is goedgekeurd" in mail.received[0].raw
    # Messenger was not even tried: the connector knew the window had closed.
    assert len(town.graph.calls) == 1
    [event] = await town.rows(TicketEvent, EVENTS.c.type == "reply_window_closed")
    assert (event["data"]["action"], event["data"]["to_channel"]) == ("rerouted", "email")


async def test_after_a_week_without_an_address_the_answer_waits_and_goes_when_the_citizen_writes(
    town: Town,
) -> None:
    await town.post(fixture("text"))
    await town.wait_for_sent(1)
    await town.age_inbound(8 * 24)
    await town.reply("1750-000001", "Het grofvuil is opgehaald.")
    [row] = await town.wait_for_rows(1, OutboxRow, OUTBOX.c.state == "waiting")
    assert row["reason"] == "waiting for the citizen to write again on Facebook Messenger"
    assert len(town.graph.calls) == 1

    assert (await town.post(message("Is het al opgehaald?", "m_second"))).status == 200
    [answer] = await town.wait_for_rows(
        1, OutboxRow, OUTBOX.c.purpose == "reply", OUTBOX.c.state == "sent"
    )
    sent = town.graph.sent()
    assert sent[1].body["message"]["text"] == "Het grofvuil is opgehaald."
    assert sent[1].body["messaging_type"] == "RESPONSE"
    assert answer["provider_id"] == sent[1].message_id


async def test_when_meta_says_the_window_is_closed_the_answer_waits(town: Town) -> None:
    await town.post(fixture("text"))
    await town.wait_for_sent(1)
    town.graph.fail.append(
        graph_error(10, "This message is sent outside of allowed window.", 2018278, status=400)
    )
    await town.reply("1750-000001", "Het grofvuil is opgehaald.")
    [row] = await town.wait_for_rows(1, OutboxRow, OUTBOX.c.state == "waiting")
    assert row["attempts"] == 1
    assert row["reason"] == "waiting for the citizen to write again on Facebook Messenger"
    assert [c.answer for c in town.graph.calls] == [200, 400]


# --- Graph errors ---------------------------------------------------------------------------------


async def test_a_citizen_who_cannot_be_reached_fails_at_once(town: Town) -> None:
    town.graph.fail.append(graph_error(551, "This person isn't available right now.", 1545041))
    await town.post(fixture("text"))
    [row] = await town.wait_for_rows(1, OutboxRow, OUTBOX.c.state == "failed")
    assert row["attempts"] == 1
    assert "code 551/1545041" in row["reason"]
    assert "blocked the Page" in row["reason"]
    assert "fbtrace AbCdEfGh123" in row["reason"]


@pytest.mark.parametrize(
    "error",
    [
        graph_error(613, "Calls to this api have exceeded the rate limit."),
        graph_error(4, "Application request limit reached", status=403),
        graph_error(190, "Error validating access token: Session has expired."),
        graph_error(1200, "Temporary send message failure. Please try again later.", status=500),
        (502, {}),
    ],
)
async def test_a_temporary_graph_error_is_retried_and_the_answer_sent_once(
    town: Town, error: tuple[int, dict[str, Any]]
) -> None:
    town.graph.fail.append(error)
    await town.post(fixture("text"))
    [row] = await town.wait_for_rows(1, OutboxRow, OUTBOX.c.state == "sent")
    assert row["attempts"] == 2
    assert [c.answer for c in town.graph.calls] == [error[0], 200]
    assert len(town.graph.sent()) == 1


# --- configuration --------------------------------------------------------------------------------


async def test_without_the_facebook_settings_the_channel_is_off_and_says_why(
    start_town: StartTown,
) -> None:
    town = await start_town(env={"FACEBOOK_PAGE_TOKEN": ""})
    ready = await (await town.client.get("/readyz")).json()
    assert ready["channels"]["messenger"] == "disabled"
    response = await town.post(fixture("text"))
    assert response.status == 404
    runtime = town.client.app[RUNTIME]
    connector = MessengerConnector(
        runtime.connectors[Channel.WEBFORM].context, runtime.config.settings.channels.messenger
    )
    assert (
        connector.disabled_reason == "no Facebook app or Page configured (set FACEBOOK_PAGE_TOKEN)"
    )
