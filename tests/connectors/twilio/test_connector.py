"""SMS and WhatsApp end to end: the whole service, Twilio's signed webhooks, a fake Twilio API.

Configured through the sample configuration's TWILIO_* variables, as an operator would; what
the citizen gets back is what the fake Twilio REST API recorded.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient
from structlog.testing import capture_logs

from ingest.files import STORAGE_FULL
from meldpunt.app import RUNTIME, create_app
from store.models import JournalEntry, Message, OutboxRow, Ticket, TicketEvent, table_of
from tests.connectors.twilio.conftest import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    FakeTwilio,
    fixture,
    signed,
)
from tests.service import RunningService, sample_config, until

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[Client]]

PUBLIC_URL = "https://meldpunt.wingene.example"
MESSAGING = "/webhooks/twilio/messaging"
STATUS = "/webhooks/twilio/status"
SMS_NUMBER = "+3250123456"
WHATSAPP_SENDER = "+3250654321"
TEMPLATE_SID = "HX0123456789abcdef0123456789abcdef"
CITIZEN = "+32470123456"
FAST_DISPATCH = (
    "routing:\n  file:",
    "dispatch: {interval_seconds: 0.05, backoff_seconds: 0.1, backoff_max_seconds: 0.2}\n"
    "routing:\n  file:",
)

MESSAGES = table_of(Message)
OUTBOX = table_of(OutboxRow)
EVENTS = table_of(TicketEvent)


@dataclass
class Town(RunningService):
    """The running service with the fake Twilio API its answers go to."""

    twilio: FakeTwilio

    async def post(
        self, path: str, form: dict[str, str], *, url: str | None = None, token: str = AUTH_TOKEN
    ) -> Any:
        body, headers = signed(url or f"{PUBLIC_URL}{path}", form, token)
        return await self.client.post(path, data=body, headers=headers)

    async def wait_for_sent(self, count: int) -> list[dict[str, str]]:
        async def enough() -> bool:
            return len(self.twilio.sent()) >= count

        await until(enough, f"{count} message(s) accepted by Twilio")
        return self.twilio.sent()

    async def reply(self, reference: str, text: str, **extra: str) -> None:
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


def twilio_env(monkeypatch: pytest.MonkeyPatch, fake: FakeTwilio) -> None:
    for name, value in {
        "MELDPUNT_PUBLIC_URL": PUBLIC_URL,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_API_BASE": fake.base,
        "TWILIO_SMS_NUMBER": SMS_NUMBER,
        "TWILIO_WHATSAPP_SENDER": WHATSAPP_SENDER,
        "TWILIO_WHATSAPP_TEMPLATE_SID": TEMPLATE_SID,
    }.items():
        monkeypatch.setenv(name, value)


StartTown = Callable[..., Awaitable[Town]]


@pytest.fixture
def start_town(
    tmp_path: Path,
    database_url: str,
    aiohttp_client: ClientFactory,
    monkeypatch: pytest.MonkeyPatch,
    fake_twilio: FakeTwilio,
) -> StartTown:
    async def start(**replace: str) -> Town:
        twilio_env(monkeypatch, fake_twilio)
        config = sample_config(
            tmp_path, database_url, monkeypatch, replace=dict([FAST_DISPATCH], **replace)
        )
        client = await aiohttp_client(create_app(config, migrate=True))
        return Town(client, fake_twilio)

    return start


@pytest.fixture
async def town(start_town: StartTown) -> Town:
    return await start_town()


async def test_an_sms_becomes_a_ticket_and_is_acknowledged_by_sms(town: Town) -> None:
    response = await town.post(MESSAGING, fixture("sms"))
    assert response.status == 200
    assert response.content_type == "text/xml"
    assert (await response.text()).endswith("<Response />")

    [ticket] = await town.rows(Ticket)
    assert ticket["reference"] == "1750-000001"
    assert (ticket["origin_channel"], ticket["reply_channel"]) == ("sms", "sms")
    assert ticket["reply_address"] == CITIZEN
    assert ticket["conversation"] == f"sms:{CITIZEN}"
    [incoming] = await town.rows(Message, MESSAGES.c.direction == "in")
    assert incoming["external_id"] == "SM9f2c4be1a7d34e0c8a1b2c3d4e5f6a70"
    assert incoming["text"] == "De vuilbak aan de kerk is al drie dagen niet geledigd."

    [ack] = await town.wait_for_sent(1)
    assert (ack["To"], ack["From"]) == (CITIZEN, SMS_NUMBER)
    assert "1750-000001" in ack["Body"]
    assert ack["StatusCallback"] == f"{PUBLIC_URL}{STATUS}"
    [row] = await town.wait_for_rows(1, OutboxRow, OUTBOX.c.state == "sent")
    assert row["provider_id"].startswith("SM")

    detail = await town.client.get(
        "/api/v1/tickets/1750-000001",
        headers={"Authorization": f"Bearer {await town.staff_token()}"},
    )
    messages = (await detail.json())["messages"]
    assert [m["segments"] for m in messages] == [1, 1]
    ready = await (await town.client.get("/readyz")).json()
    assert ready["channels"]["sms"] == ready["channels"]["whatsapp"] == "enabled"


async def test_with_the_file_storage_full_the_text_is_kept_and_the_photo_noted(
    start_town: StartTown, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Twilio does not send an inbound message again after an error answer, so refusing it
    # for its photo would lose the text too.
    town = await start_town()
    files = town.client.app[RUNTIME].files

    def no_space(data: bytes) -> str:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files, "_write", no_space)
    form = fixture("whatsapp_media")
    form["NumMedia"] = "1"
    form["MediaUrl0"] = form["MediaUrl0"].replace("https://api.twilio.com", town.twilio.base)
    photo = b"\xff\xd8\xff\xe0" + bytes(300)
    town.twilio.media = {form["MediaUrl0"].rsplit("/", 1)[-1]: ("image/jpeg", photo)}
    response = await town.post(MESSAGING, form)
    assert response.status == 200

    detail = await (
        await town.client.get(
            "/api/v1/tickets/1750-000001",
            headers={"Authorization": f"Bearer {await town.staff_token()}"},
        )
    ).json()
    [message] = detail["messages"][:1]
    assert message["text"]
    assert [(a["sha256"], a["removed_reason"]) for a in message["attachments"]] == [
        (None, STORAGE_FULL)
    ]


async def test_a_whatsapp_message_keeps_name_photos_and_refuses_what_is_not_allowed(
    start_town: StartTown,
) -> None:
    town = await start_town(**{"max_media_bytes: 10485760": "max_media_bytes: 4096"})
    photo = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8
    town.twilio.media = {
        "ME11111111111111111111111111111111": ("image/jpeg", photo),
        "ME22222222222222222222222222222222": ("image/jpeg", b"\xff\xd8\xff" + b"x" * 5000),
        "ME33333333333333333333333333333333": ("application/x-msdownload", b"MZ"),
    }
    form = fixture("whatsapp_media")
    for n in range(3):
        form[f"MediaUrl{n}"] = form[f"MediaUrl{n}"].replace(
            "https://api.twilio.com", town.twilio.base
        )
    response = await town.post(MESSAGING, form)
    assert response.status == 200

    [ticket] = await town.rows(Ticket)
    assert (ticket["origin_channel"], ticket["reply_address"]) == ("whatsapp", CITIZEN)
    assert ticket["conversation"] == f"whatsapp:{CITIZEN}"
    files = await (
        await town.client.get(
            "/api/v1/tickets/1750-000001",
            headers={"Authorization": f"Bearer {await town.staff_token()}"},
        )
    ).json()
    assert files["contact"]["name"] == "Marie Claes"
    [message] = files["messages"][:1]
    assert message["segments"] is None
    assert [(a["filename"], a["size"], a["removed_reason"]) for a in message["attachments"]] == [
        ("media-1.jpg", len(photo), None),
        ("media-2.jpg", 5003, "larger than 4096 bytes"),
        ("media-3.bin", 0, "file type application/x-msdownload is not accepted"),
    ]
    # The refused type is never fetched; the others with the account's credentials.
    assert town.twilio.media_requests == 2
    sha = message["attachments"][0]["sha256"]
    assert await town.client.app[RUNTIME].files.get(sha) == photo

    # A shared location joins the same conversation, and the answer goes back by WhatsApp.
    response = await town.post(MESSAGING, fixture("whatsapp_location"))
    assert response.status == 200
    assert len(await town.rows(Ticket)) == 1
    [ack] = await town.wait_for_sent(1)
    assert (ack["To"], ack["From"]) == (f"whatsapp:{CITIZEN}", f"whatsapp:{WHATSAPP_SENDER}")


async def test_a_location_and_a_quick_reply_set_location_and_kind(town: Town) -> None:
    assert (await town.post(MESSAGING, fixture("whatsapp_button"))).status == 200
    [ticket] = await town.rows(Ticket)
    assert ticket["kind"] == "complaint"
    assert ticket["subject"] == "Klacht indienen"

    async with town.db.engine.begin() as conn:
        await conn.execute(sa.update(table_of(Ticket)).values(status="closed"))
    assert (await town.post(MESSAGING, fixture("whatsapp_location"))).status == 200
    [_, located] = await town.rows(Ticket)
    assert (located["location_lat"], located["location_lon"]) == (51.0631, 3.2729)
    assert located["location_address"] == "Gemeentehuis – Oostmolenstraat 11, 8750 Wingene"


@pytest.mark.parametrize("path", [MESSAGING, STATUS])
@pytest.mark.parametrize("problem", ["bad", "missing", "host header", "other token"])
async def test_a_webhook_without_a_valid_signature_is_refused_and_nothing_stored(
    town: Town, path: str, problem: str
) -> None:
    form = fixture("sms") if path == MESSAGING else fixture("status_delivered", MessageSid="SM1")
    if problem == "bad":
        body, headers = signed(f"{PUBLIC_URL}{path}", form)
        headers["X-Twilio-Signature"] = "AAAA" + headers["X-Twilio-Signature"][4:]
        response = await town.client.post(path, data=body, headers=headers)
    elif problem == "missing":
        body, headers = signed(f"{PUBLIC_URL}{path}", form)
        del headers["X-Twilio-Signature"]
        response = await town.client.post(path, data=body, headers=headers)
    elif problem == "host header":
        # Signed for the address the request reached, not the configured public URL.
        url = str(town.client.make_url(path))
        response = await town.post(path, form, url=url)
    else:
        response = await town.post(path, form, token="f" * 32)
    assert response.status == 403
    assert await town.rows(JournalEntry) == []
    assert await town.rows(Ticket) == []


async def test_a_redelivered_message_is_stored_once(town: Town) -> None:
    for _ in range(2):
        response = await town.post(MESSAGING, fixture("sms"))
        assert response.status == 200
    assert len(await town.rows(Message, MESSAGES.c.direction == "in")) == 1
    states = [j["state"] for j in await town.rows(JournalEntry)]
    assert states == ["processed", "duplicate"]


async def test_a_conversation_continues_the_open_ticket_and_one_number_is_one_citizen(
    town: Town,
) -> None:
    await town.post(MESSAGING, fixture("sms"))
    await town.post(MESSAGING, fixture("sms", MessageSid="SM2", Body="Nog altijd niet."))
    [ticket] = await town.rows(Ticket)
    assert len(await town.rows(Message, MESSAGES.c.ticket_id == ticket["id"])) >= 2
    # The same number on WhatsApp is the same contact, in a conversation of its own.
    await town.post(MESSAGING, fixture("whatsapp_button"))
    tickets = await town.rows(Ticket)
    assert len(tickets) == 2
    assert tickets[0]["contact_id"] == tickets[1]["contact_id"]


async def test_a_payload_that_is_no_message_is_quarantined_and_answered(town: Town) -> None:
    form = fixture("sms")
    del form["From"]
    response = await town.post(MESSAGING, form)
    assert response.status == 200
    [entry] = await town.rows(JournalEntry)
    assert entry["state"] == "quarantined"
    assert "no MessageSid or no From" in entry["error"]
    assert await town.rows(Ticket) == []


async def test_intake_down_answers_503_so_twilio_can_retry(town: Town) -> None:
    await town.client.app[RUNTIME].intake.stop()
    response = await town.post(MESSAGING, fixture("sms"))
    assert response.status == 503
    assert await town.rows(Ticket) == []


async def test_status_callbacks_update_the_delivery_status(town: Town) -> None:
    await town.post(MESSAGING, fixture("sms"))
    [ack] = await town.wait_for_rows(1, OutboxRow, OUTBOX.c.state == "sent")
    sid = ack["provider_id"]
    response = await town.post(STATUS, fixture("status_delivered", MessageSid=sid, SmsSid=sid))
    assert response.status == 204
    [message] = await town.rows(Message, MESSAGES.c.external_id == sid)
    assert message["delivery_status"] == "delivered"

    await town.reply("1750-000001", "We komen de vuilbak morgen ledigen.")
    [_, answer] = await town.wait_for_rows(2, OutboxRow, OUTBOX.c.state == "sent")
    failed = fixture("status_undelivered", MessageSid=answer["provider_id"])
    assert (await town.post(STATUS, failed)).status == 204
    [row] = await town.rows(OutboxRow, OUTBOX.c.id == answer["id"])
    assert row["state"] == "failed"
    assert "Twilio error 30003" in row["reason"]
    assert "unreachable" in row["reason"]
    [event] = await town.rows(TicketEvent, EVENTS.c.type == "delivery_failed")
    assert "30003" in event["data"]["detail"]


async def test_twilio_down_then_up_sends_each_message_once(town: Town) -> None:
    town.twilio.fail_next = 3
    await town.post(MESSAGING, fixture("sms"))
    [row] = await town.wait_for_rows(1, OutboxRow, OUTBOX.c.state == "sent")
    assert row["attempts"] == 4
    assert [c["_answer"] for c in town.twilio.calls] == ["500", "500", "500", "201"]
    assert len(town.twilio.sent()) == 1


async def test_a_twilio_that_hangs_is_given_up_on_and_not_sent_again(
    start_town: StartTown,
) -> None:
    town = await start_town(**{"timeout_seconds: 20": "timeout_seconds: 0.3"})
    town.twilio.hang_next = 1
    await town.post(MESSAGING, fixture("sms"))
    # Twilio had the request: it may have sent the SMS. Staff see "delivery uncertain".
    [row] = await town.wait_for_rows(1, OutboxRow, OUTBOX.c.state == "uncertain")
    assert row["attempts"] == 1
    assert "may or may not have arrived" in row["reason"]
    await asyncio.sleep(0.5)  # many dispatcher passes and back-offs
    assert len(town.twilio.calls) == 1


async def test_an_unsubscribed_number_fails_at_once(town: Town) -> None:
    town.twilio.refuse[CITIZEN] = 21610
    await town.post(MESSAGING, fixture("sms"))
    [row] = await town.wait_for_rows(1, OutboxRow, OUTBOX.c.state == "failed")
    assert row["attempts"] == 1
    assert "21610" in row["reason"] and "STOP" in row["reason"]


async def test_a_reply_within_the_window_goes_by_whatsapp(town: Town) -> None:
    await town.post(MESSAGING, fixture("whatsapp_button"))
    await town.wait_for_sent(1)
    await town.reply("1750-000001", "We bekijken uw klacht deze week.")
    [_, answer] = await town.wait_for_sent(2)
    assert answer["To"] == f"whatsapp:{CITIZEN}"
    assert answer["From"] == f"whatsapp:{WHATSAPP_SENDER}"
    assert answer["Body"] == "We bekijken uw klacht deze week."
    assert "ContentSid" not in answer
    sid = (await town.wait_for_rows(2, OutboxRow, OUTBOX.c.state == "sent"))[1]["provider_id"]
    response = await town.post(STATUS, fixture("whatsapp_status_read", MessageSid=sid, SmsSid=sid))
    assert response.status == 204
    [message] = await town.rows(Message, MESSAGES.c.external_id == sid)
    assert (message["channel"], message["delivery_status"]) == ("whatsapp", "read")


async def test_outside_the_window_the_template_goes_and_the_answer_falls_back_to_sms(
    town: Town,
) -> None:
    await town.post(MESSAGING, fixture("whatsapp_button"))
    await town.wait_for_sent(1)
    await town.age_inbound(25)
    await town.reply("1750-000001", "Uw klacht is behandeld.")
    [_, template, sms] = await town.wait_for_sent(3)
    assert template["ContentSid"] == TEMPLATE_SID
    assert template["ContentVariables"] == '{"1": "1750-000001"}'
    assert template["To"] == f"whatsapp:{CITIZEN}"
    assert "Body" not in template
    assert (sms["To"], sms["From"], sms["Body"]) == (CITIZEN, SMS_NUMBER, "Uw klacht is behandeld.")
    [row] = await town.wait_for_rows(
        1, OutboxRow, OUTBOX.c.purpose == "reply", OUTBOX.c.state == "sent"
    )
    assert (row["channel"], row["recipient"]) == ("sms", CITIZEN)
    assert row["reason"] == "WhatsApp window closed: sent by SMS instead"
    [event] = await town.rows(TicketEvent, EVENTS.c.type == "reply_window_closed")
    assert event["data"]["action"] == "rerouted"
    assert event["data"]["to_channel"] == "sms"
    assert event["data"]["template_provider_id"].startswith("SM")


async def test_outside_the_window_without_fallback_the_answer_waits_for_the_citizen(
    start_town: StartTown,
) -> None:
    town = await start_town(**{"whatsapp_fallback: [sms, email]": "whatsapp_fallback: []"})
    await town.post(MESSAGING, fixture("whatsapp_button"))
    await town.wait_for_sent(1)
    await town.age_inbound(30)
    await town.reply("1750-000001", "Kan u ons een foto sturen?")
    [row] = await town.wait_for_rows(1, OutboxRow, OUTBOX.c.state == "waiting")
    assert row["reason"].startswith(
        "waiting for the citizen to answer the WhatsApp template sent at "
    )
    assert len(town.twilio.sent()) == 2
    [event] = await town.rows(TicketEvent, EVENTS.c.type == "reply_window_closed")
    assert event["data"]["action"] == "waiting"
    # A second answer waits behind the first, without a second template.
    await town.reply("1750-000001", "Of het adres?")
    await town.wait_for_rows(2, OutboxRow, OUTBOX.c.state == "waiting")
    await asyncio.sleep(0.3)
    assert len(town.twilio.sent()) == 2

    # The citizen answers the template: the window is open again and the answers go out.
    await town.post(MESSAGING, fixture("whatsapp_location"))
    await town.wait_for_rows(2, OutboxRow, OUTBOX.c.purpose == "reply", OUTBOX.c.state == "sent")
    answers = [(a["To"], a["Body"]) for a in town.twilio.sent()[2:]]
    assert answers == [
        (f"whatsapp:{CITIZEN}", "Kan u ons een foto sturen?"),
        (f"whatsapp:{CITIZEN}", "Of het adres?"),
    ]


async def test_the_service_starts_without_twilio_variables(
    tmp_path: Path,
    database_url: str,
    aiohttp_client: ClientFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_SMS_NUMBER"):
        monkeypatch.delenv(name, raising=False)
    config = sample_config(tmp_path, database_url, monkeypatch)
    with capture_logs() as logs:
        client = await aiohttp_client(create_app(config, migrate=True))
    disabled = {e["channel"]: e["reason"] for e in logs if e["event"] == "channel disabled"}
    assert "TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN" in disabled["sms"]
    assert "TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN" in disabled["whatsapp"]
    ready = await client.get("/readyz")
    assert ready.status == 200
    assert (await ready.json())["channels"]["sms"] == "disabled"
    assert (await client.post(MESSAGING, data=b"From=x")).status == 404
