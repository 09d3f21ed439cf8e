"""Telegram end to end: the whole service, Telegram's webhook with its secret, a fake Bot API.

Configured through the sample configuration's TELEGRAM_* variables, as an operator would; what
the citizen gets back is what the fake Bot API recorded.
"""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from ingest.model import Channel, RawPayload
from meldpunt.app import RUNTIME, create_app
from store.models import ContactIdentity, JournalEntry, Message, OutboxRow, Ticket, table_of
from tests.conftest import free_port
from tests.connectors.telegram.conftest import (
    CITIZEN,
    SECRET,
    TOKEN,
    WEBHOOK,
    ClientFactory,
    StartTown,
    Town,
    fixture,
    text_update,
)
from tests.connectors.twilio.conftest import ACCOUNT_SID, AUTH_TOKEN, signed
from tests.connectors.twilio.conftest import fixture as twilio_fixture
from tests.service import sample_config

MESSAGES = table_of(Message)
OUTBOX = table_of(OutboxRow)
JOURNAL = table_of(JournalEntry)


async def test_a_text_becomes_a_ticket_acknowledged_in_the_chat(town: Town) -> None:
    response = await town.post(fixture("text"))
    assert response.status == 200

    [ticket] = await town.rows(Ticket)
    assert ticket["reference"] == "1750-000001"
    assert (ticket["origin_channel"], ticket["reply_channel"]) == ("telegram", "telegram")
    assert ticket["reply_address"] == str(CITIZEN)
    assert ticket["conversation"] == f"telegram:{CITIZEN}"
    assert (ticket["kind"], ticket["department"]) == ("report", "technical-service")
    [incoming] = await town.rows(Message, MESSAGES.c.direction == "in")
    assert incoming["external_id"] == f"{CITIZEN}:17"
    assert incoming["text"] == "De straatlamp voor Kerkstraat 12 brandt al een week niet."
    assert incoming["created_at"].isoformat().startswith("2026-11-16T09:12:17")
    detail = await town.api("/tickets/1750-000001")
    assert detail["contact"]["name"] == "Marie Claes"
    assert detail["contact"]["language"] == "nl"
    assert detail["contact"]["identities"] == [{"kind": "telegram", "value": str(CITIZEN)}]

    [ack] = await town.wait_for_calls("sendMessage", 1)
    assert ack.params["chat_id"] == str(CITIZEN)
    assert "1750-000001" in ack.params["text"]
    [row] = await town.wait_for_rows(1, OutboxRow, OUTBOX.c.state == "sent")
    assert row["provider_id"] == f"{CITIZEN}:101"
    ready = await (await town.client.get("/readyz")).json()
    assert ready["channels"]["telegram"] == "enabled"


@pytest.mark.parametrize("problem", ["bad", "missing", "other case", "empty"])
async def test_an_update_without_the_right_secret_is_refused_and_nothing_stored(
    town: Town, problem: str
) -> None:
    secret = {
        "bad": SECRET[:-1] + "X",
        "missing": None,
        "other case": SECRET.upper(),
        "empty": "",
    }[problem]
    response = await town.post(fixture("text"), secret=secret)
    assert response.status == 403
    assert await town.rows(JournalEntry) == []
    assert await town.rows(Ticket) == []
    assert town.telegram.calls == []


async def test_a_body_that_is_no_update_is_quarantined_and_answered(town: Town) -> None:
    broken = fixture("text")
    del broken["message"]["date"]
    for body in (b"this is not json", b"[1, 2]", broken):
        assert (await town.post(body)).status == 200
    entries = await town.rows(JournalEntry)
    assert [e["state"] for e in entries] == ["quarantined"] * 3
    assert "not JSON" in entries[0]["error"]
    assert entries[0]["external_id"].startswith("sha256-")
    assert "not a JSON object" in entries[1]["error"]
    assert entries[2]["external_id"] == "update:583920101"
    assert "does not follow the Bot API" in entries[2]["error"]
    assert await town.rows(Ticket) == []


async def test_a_redelivered_update_is_stored_once(town: Town) -> None:
    for _ in range(2):
        assert (await town.post(fixture("text"))).status == 200
    assert len(await town.rows(Message, MESSAGES.c.direction == "in")) == 1
    assert [j["state"] for j in await town.rows(JournalEntry)] == ["processed", "duplicate"]


async def test_intake_down_answers_503_so_telegram_delivers_again(town: Town) -> None:
    await town.client.app[RUNTIME].intake.stop()
    assert (await town.post(fixture("text"))).status == 503
    assert await town.rows(Ticket) == []


async def test_a_photo_a_document_and_a_voice_note_are_fetched_and_kept(town: Town) -> None:
    photo = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8
    pdf = b"%PDF-1.7\n" + b"x" * 1024
    voice = b"OggS" + b"\x00" * 1116
    town.telegram.files = {
        "AgACAgQAAxkBAAMSZ1x-large": ("photos/file_7.jpg", photo),
        "BQACAgQAAxkBAAMTZ1x-doc": ("documents/file_8.pdf", pdf),
        "AwACAgQAAxkBAAMUZ1x-voice": ("voice/file_9.oga", voice),
    }
    for name in ("photo", "document", "voice"):
        assert (await town.post(fixture(name))).status == 200

    # One conversation: the three messages are one ticket.
    [ticket] = await town.rows(Ticket)
    detail = await town.api(f"/tickets/{ticket['reference']}")
    incoming = [m for m in detail["messages"] if m["direction"] == "in"]
    assert [m["text"] for m in incoming] == [
        "Zwerfvuil aan de glasbol in de Stationsstraat.",
        "Bestand: schade fietspad.pdf",
        "Spraakbericht van 0:42",
    ]
    files = [
        (a["filename"], a["content_type"], a["size"]) for m in incoming for a in m["attachments"]
    ]
    assert files == [
        ("foto-18.jpg", "image/jpeg", len(photo)),
        ("schade fietspad.pdf", "application/pdf", len(pdf)),
        ("spraakbericht-20.ogg", "audio/ogg", len(voice)),
    ]
    stored = [a["sha256"] for m in incoming for a in m["attachments"]]
    store = town.client.app[RUNTIME].files
    assert [await store.get(sha) for sha in stored] == [photo, pdf, voice]
    # Of the photo's sizes only the largest (by its dimensions) is fetched.
    fetched = [c.params["file_id"] for c in town.telegram.calls if c.method == "getFile"]
    assert fetched[0] == "AgACAgQAAxkBAAMSZ1x-large"
    assert town.telegram.downloads == [
        "photos/file_7.jpg",
        "documents/file_8.pdf",
        "voice/file_9.oga",
    ]


async def test_files_too_large_of_a_refused_type_or_gone_are_noted_not_fetched(
    start_town: StartTown,
) -> None:
    town = await start_town(**{"max_file_bytes: 10485760": "max_file_bytes: 1500"})
    exe = fixture("document")
    exe["update_id"] += 100
    exe["message"].update(message_id=40)
    exe["message"]["document"].update(
        file_name="factuur.exe", mime_type="application/x-msdownload", file_id="BQAC-exe"
    )
    gone = fixture("document")
    gone["update_id"] += 101
    gone["message"].update(message_id=41)
    gone["message"]["document"].update(file_id="BQAC-expired")
    for update in (fixture("photo"), exe, gone):
        assert (await town.post(update)).status == 200

    [ticket] = await town.rows(Ticket)
    detail = await town.api(f"/tickets/{ticket['reference']}")
    attachments = [
        (a["filename"], a["size"], a["sha256"], a["removed_reason"])
        for m in detail["messages"]
        for a in m["attachments"]
    ]
    assert attachments == [
        ("foto-18.jpg", 2064, None, "larger than 1500 bytes"),
        ("factuur.exe", 1033, None, "file type application/x-msdownload is not accepted"),
        (
            "schade fietspad.pdf",
            1033,
            None,
            "could not be downloaded from Telegram (Invalid file_id)",
        ),
    ]
    # Neither the large photo nor the refused type was asked for.
    assert [c.params["file_id"] for c in town.telegram.calls if c.method == "getFile"] == [
        "BQAC-expired"
    ]
    assert town.telegram.downloads == []


async def test_a_location_and_a_venue_set_the_ticket_location(town: Town) -> None:
    assert (await town.post(fixture("location"))).status == 200
    [ticket] = await town.rows(Ticket)
    assert (ticket["location_lat"], ticket["location_lon"]) == (51.063102, 3.272913)
    [message] = await town.rows(Message, MESSAGES.c.direction == "in")
    assert message["text"] == "Gedeelde locatie"

    async with town.db.engine.begin() as conn:
        await conn.execute(table_of(Ticket).update().values(status="closed"))
    assert (await town.post(fixture("venue"))).status == 200
    [_, venue] = await town.rows(Ticket)
    assert (venue["location_lat"], venue["location_lon"]) == (51.0631, 3.2729)
    assert venue["location_address"] == "Gemeentehuis – Oostmolenstraat 11, 8750 Wingene"


async def test_the_citizens_own_number_links_telegram_to_their_sms(
    start_town: StartTown, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Twilio takes SMS in; with no sending number configured nothing goes out by SMS.
    for name, value in {
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_API_BASE": f"http://127.0.0.1:{free_port()}",
    }.items():
        monkeypatch.setenv(name, value)
    town = await start_town()
    assert (await town.post(fixture("text"))).status == 200
    assert (await town.post(fixture("contact_own"))).status == 200
    [ticket] = await town.rows(Ticket)
    [shared] = await town.rows(Message, MESSAGES.c.external_id == f"{CITIZEN}:23")
    assert shared["text"] == "Eigen telefoonnummer gedeeld: +32470123456"
    detail = await town.api(f"/tickets/{ticket['reference']}")
    assert detail["contact"]["identities"] == [
        {"kind": "telegram", "value": str(CITIZEN)},
        {"kind": "phone", "value": "+32470123456"},
    ]

    # Somebody else's card is only text: no identity joins the citizen's contact.
    assert (await town.post(fixture("contact_other"))).status == 200
    [card] = await town.rows(Message, MESSAGES.c.external_id == f"{CITIZEN}:24")
    assert card["text"] == "Contactkaart gedeeld: Jan Peeters, +32 471 99 88 77"
    assert len(await town.rows(ContactIdentity)) == 2

    # An SMS from that number later is the same citizen.
    url = f"{town.client.app[RUNTIME].config.settings.public_url}/webhooks/twilio/messaging"
    body, headers = signed(url, twilio_fixture("sms"))
    response = await town.client.post("/webhooks/twilio/messaging", data=body, headers=headers)
    assert response.status == 200
    telegram_ticket, sms_ticket = await town.rows(Ticket)
    assert sms_ticket["origin_channel"] == "sms"
    assert sms_ticket["contact_id"] == telegram_ticket["contact_id"]


async def test_an_edit_is_added_to_the_ticket_as_an_edit(town: Town) -> None:
    assert (await town.post(fixture("text"))).status == 200
    for _ in range(2):  # the second is Telegram delivering it again
        assert (await town.post(fixture("edited_message"))).status == 200
    [ticket] = await town.rows(Ticket)
    first, edit = await town.rows(Message, MESSAGES.c.direction == "in")
    assert first["text"] == "De straatlamp voor Kerkstraat 12 brandt al een week niet."
    assert edit["ticket_id"] == ticket["id"]
    assert edit["external_id"] == f"{CITIZEN}:17:edit:1794820432"
    assert edit["text"] == (
        "[Bewerkt bericht: de burger paste zijn bericht van 16-11-2026 10:12 aan. Nieuwe tekst:]\n"
        "De straatlamp voor Kerkstraat 14 brandt al een week niet."
    )
    states = [j["state"] for j in await town.rows(JournalEntry)]
    assert states == ["processed", "processed", "duplicate"]


async def test_a_moving_live_location_is_not_a_message_each_time(town: Town) -> None:
    assert (await town.post(fixture("location"))).status == 200
    moved = fixture("location")
    moved["update_id"] += 50
    moved["edited_message"] = {**moved.pop("message"), "edit_date": 1794820500}
    moved["edited_message"]["location"] = {"latitude": 51.0635, "longitude": 3.2731}
    assert (await town.post(moved)).status == 200
    assert len(await town.rows(Message, MESSAGES.c.direction == "in")) == 1
    [_, ignored] = await town.rows(JournalEntry)
    assert (ignored["state"], ignored["external_id"]) == ("ignored", f"{CITIZEN}:21:edit")
    assert "live location" in ignored["error"]


async def test_start_gets_a_welcome_with_a_button_per_kind_and_no_ticket(town: Town) -> None:
    assert (await town.post(fixture("start"))).status == 200
    [welcome] = await town.wait_for_calls("sendMessage", 1)
    assert welcome.params["chat_id"] == str(CITIZEN)
    assert welcome.params["text"].startswith("Welkom bij het contactpunt van de gemeente Wingene.")
    buttons = [b for row in welcome.params["reply_markup"]["inline_keyboard"] for b in row]
    assert [(b["text"], b["callback_data"]) for b in buttons] == [
        ("Melding", "kind:report"),
        ("Vraag", "kind:question"),
        ("Klacht", "kind:complaint"),
        ("Suggestie", "kind:suggestion"),
        ("Compliment", "kind:compliment"),
    ]
    assert await town.rows(Ticket) == []
    [entry] = await town.rows(JournalEntry)
    assert (entry["state"], entry["external_id"]) == ("ignored", f"{CITIZEN}:16")
    assert "welcome sent, no ticket" in entry["error"]

    # A French app gets the French default.
    french = fixture("start")
    french["update_id"] += 1
    french["message"]["message_id"] = 50
    french["message"]["from"]["language_code"] = "fr"
    assert (await town.post(french)).status == 200
    [_, bienvenue] = await town.wait_for_calls("sendMessage", 2)
    assert bienvenue.params["text"].startswith("Bienvenue au point de contact de Wingene.")
    assert bienvenue.params["reply_markup"]["inline_keyboard"][1][0]["text"] == "Plainte"


async def test_a_kind_button_starts_a_new_ticket_of_that_kind_with_the_next_message(
    town: Town,
) -> None:
    assert (await town.post(fixture("text"))).status == 200
    [ack] = await town.wait_for_calls("sendMessage", 1)

    assert (await town.post(fixture("callback_query"))).status == 200
    [answer] = await town.wait_for_calls("answerCallbackQuery", 1)
    assert answer.params == {"callback_query_id": "530220187564389102", "text": "Klacht"}
    [_, prompt] = await town.wait_for_calls("sendMessage", 2)
    assert prompt.params["text"].startswith("Klacht: schrijf nu uw bericht.")
    assert len(await town.rows(Ticket)) == 1
    [entry] = await town.rows(JournalEntry, JOURNAL.c.external_id == "callback:530220187564389102")
    assert entry["state"] == "ignored" and "complaint" in entry["error"]

    # The next message opens a ticket of that kind, although the first is still open...
    complaint = "Ik wacht al drie weken op een antwoord over mijn aanvraag."
    assert (await town.post(text_update(583920120, 30, complaint))).status == 200
    first, second = await town.rows(Ticket)
    assert (second["kind"], second["department"]) == ("complaint", "complaints")
    assert second["conversation"] == f"telegram:{CITIZEN}:583920110"
    # ...the one after it continues that ticket, without the choice...
    assert (await town.post(text_update(583920121, 31, "Dossier 2026/118."))).status == 200
    assert len(await town.rows(Ticket)) == 2
    [later] = await town.rows(Message, MESSAGES.c.external_id == f"{CITIZEN}:31")
    assert later["ticket_id"] == second["id"]
    [journalled] = await town.rows(JournalEntry, JOURNAL.c.external_id == f"{CITIZEN}:31")
    assert journalled["envelope"]["kind"] is None
    # ...and an answer to the first ticket's message in the chat still finds the first ticket.
    reply_to = {"message_id": ack.result["message_id"], "date": 1794820400}
    reply_to.update(chat={"id": CITIZEN, "type": "private"}, text="Bedankt.")
    update = text_update(583920122, 32, "Is de lamp al hersteld?", reply_to_message=reply_to)
    assert (await town.post(update)).status == 200
    [answering] = await town.rows(Message, MESSAGES.c.external_id == f"{CITIZEN}:32")
    assert answering["ticket_id"] == first["id"]


async def test_a_button_meldpunt_never_sent_is_answered_and_ignored(town: Town) -> None:
    odd = fixture("callback_query")
    odd["callback_query"]["data"] = "vote:yes"
    assert (await town.post(odd)).status == 200
    [answer] = await town.wait_for_calls("answerCallbackQuery", 1)
    assert answer.params == {"callback_query_id": "530220187564389102"}
    [entry] = await town.rows(JournalEntry)
    assert entry["state"] == "ignored" and "'vote:yes'" in entry["error"]
    assert town.telegram.sent("sendMessage") == []


@pytest.mark.parametrize(
    ("name", "external_id", "reason"),
    [
        ("group_message", "-1001876543210:3051", "a message in a supergroup chat"),
        ("channel_post", "update:583920112", "a channel_post update"),
        ("sticker", f"{CITIZEN}:26", "a sticker message"),
    ],
)
async def test_what_is_not_a_citizen_writing_privately_is_journalled_and_ignored(
    town: Town, name: str, external_id: str, reason: str
) -> None:
    assert (await town.post(fixture(name))).status == 200
    [entry] = await town.rows(JournalEntry)
    assert (entry["state"], entry["external_id"]) == ("ignored", external_id)
    assert entry["error"].startswith(reason)
    assert await town.rows(Ticket) == []
    assert town.telegram.calls == []


async def test_a_staff_answer_goes_out_in_the_chat_long_texts_split_with_files(
    town: Town,
) -> None:
    assert (await town.post(fixture("text"))).status == 200
    await town.wait_for_calls("sendMessage", 1)

    paragraph = "De technische dienst heeft de lamp nagekeken en een nieuwe lamp besteld. " * 20
    long_text = "\n\n".join([paragraph.strip()] * 4)  # about 5,900 characters
    pdf, jpeg = b"%PDF-1.4\n" + b"p" * 500, b"\xff\xd8\xff\xe0" + b"j" * 700
    attachments = [
        {
            "filename": "herstelling.pdf",
            "content_type": "application/pdf",
            "content_base64": base64.b64encode(pdf).decode(),
        },
        {
            "filename": "lamp.jpg",
            "content_type": "image/jpeg",
            "content_base64": base64.b64encode(jpeg).decode(),
        },
    ]
    await town.reply("1750-000001", long_text, attachments=attachments)
    [_, part1, part2] = await town.wait_for_calls("sendMessage", 3)
    assert {part1.params["chat_id"], part2.params["chat_id"]} == {str(CITIZEN)}
    assert len(part1.params["text"]) <= 4096 and len(part2.params["text"]) <= 4096
    assert part1.params["text"] + "\n\n" + part2.params["text"] == long_text
    [document] = await town.wait_for_calls("sendDocument", 1)
    assert document.uploads["document"] == ("herstelling.pdf", pdf)
    [photo] = await town.wait_for_calls("sendPhoto", 1)
    assert photo.uploads["photo"] == ("lamp.jpg", jpeg)
    [_, answer] = await town.wait_for_rows(2, OutboxRow, OUTBOX.c.state == "sent")
    # The answer is known by its first part, as the citizen's own messages are known.
    assert answer["provider_id"] == f"{CITIZEN}:{part1.result['message_id']}"


@pytest.mark.parametrize(
    ("status", "description", "reason"),
    [
        (
            403,
            "Forbidden: bot was blocked by the user",
            "Forbidden: bot was blocked by the user (the citizen blocked the bot)",
        ),
        # python-telegram-bot drops the "Bad Request: " of a 400.
        (400, "Bad Request: chat not found", "Chat not found (the chat does not exist or was"),
    ],
)
async def test_a_chat_that_refuses_fails_at_once_and_visibly(
    town: Town, status: int, description: str, reason: str
) -> None:
    town.telegram.refuse[CITIZEN] = (status, description)
    assert (await town.post(fixture("text"))).status == 200
    [row] = await town.wait_for_rows(1, OutboxRow, OUTBOX.c.state == "failed")
    assert row["attempts"] == 1
    assert f"Telegram refused the message: {reason}" in row["reason"]
    [ack] = await town.rows(Message, MESSAGES.c.direction == "out")
    assert ack["delivery_status"] == "failed"


async def test_flood_control_and_server_errors_are_retried_and_sent_once(town: Town) -> None:
    town.telegram.retry_after_next = 1
    town.telegram.fail_next = 1
    assert (await town.post(fixture("text"))).status == 200
    [row] = await town.wait_for_rows(1, OutboxRow, OUTBOX.c.state == "sent")
    assert row["attempts"] == 3
    assert [c.status for c in town.telegram.calls if c.method == "sendMessage"] == [500, 429, 200]


async def test_the_token_never_reaches_the_logs(
    start_town: StartTown, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with capture_logs() as events:
        town = await start_town()
        town.telegram.refuse[CITIZEN] = (403, "Forbidden: bot was blocked by the user")
        assert (await town.post(fixture("start"))).status == 200
        assert (await town.post(fixture("text"))).status == 200
        await town.wait_for_rows(1, OutboxRow, OUTBOX.c.state == "failed")
    assert town.telegram.calls, "the bot called the fake Bot API"
    assert TOKEN not in caplog.text
    assert TOKEN.split(":")[1] not in repr(events)
    assert any(e["event"] == "telegram message not sent" for e in events)


async def test_the_service_starts_without_telegram_variables(
    tmp_path: Path,
    database_url: str,
    aiohttp_client: ClientFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("TELEGRAM_BOT_TOKEN", "TELEGRAM_WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    config = sample_config(tmp_path, database_url, monkeypatch)
    with capture_logs() as logs:
        client = await aiohttp_client(create_app(config, migrate=True))
    disabled = {e["channel"]: e["reason"] for e in logs if e["event"] == "channel disabled"}
    assert "TELEGRAM_BOT_TOKEN, TELEGRAM_WEBHOOK_SECRET" in disabled["telegram"]
    assert (await (await client.get("/readyz")).json())["channels"]["telegram"] == "disabled"
    response = await client.post(WEBHOOK, json={"update_id": 1}, headers=_secret_header())
    assert response.status == 404


def _secret_header() -> dict[str, str]:
    return {"X-Telegram-Bot-Api-Secret-Token": SECRET}


async def test_an_update_is_read_again_also_when_the_bot_is_not_running(town: Town) -> None:
    # 'meldpunt quarantine --retry' hands stored updates to a connector that was never started.
    connector = town.client.app[RUNTIME].connectors[Channel.TELEGRAM]
    await connector.stop()
    town.telegram.files = {"AgACAgQAAxkBAAMSZ1x-large": ("photos/file_7.jpg", b"\xff\xd8\xff")}
    await connector.redeliver(RawPayload("application/json", json.dumps(fixture("photo")).encode()))
    [message] = await town.rows(Message, MESSAGES.c.direction == "in")
    assert message["external_id"] == f"{CITIZEN}:18"
    assert town.telegram.downloads == ["photos/file_7.jpg"]


async def test_an_update_this_code_cannot_read_is_quarantined_not_refused(
    town: Town, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unexpected(*args: object, **kwargs: object) -> None:
        raise TypeError("'NoneType' object is not iterable")

    monkeypatch.setattr("connectors.telegram.connector.read_message", unexpected)
    assert (await town.post(fixture("text"))).status == 200
    [entry] = await town.rows(JournalEntry)
    assert (entry["state"], entry["external_id"]) == ("quarantined", "update:583920101")
    assert entry["error"] == (
        "update 583920101 could not be read: TypeError: 'NoneType' object is not iterable"
    )
