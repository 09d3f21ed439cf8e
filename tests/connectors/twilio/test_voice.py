"""The phone line end to end: Twilio's signed voice webhooks, TwiML back, tickets from calls.

The whole service runs on the sample configuration; the clock the call flow reads office hours
from is frozen; recordings are fetched from the fake Twilio and answers go out through it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from connectors.twilio.connector import TwilioConnector
from ingest.model import Channel
from meldpunt.app import RUNTIME, create_app
from store.models import (
    AttachmentRow,
    ContactEvent,
    ContactIdentity,
    JournalEntry,
    Message,
    OutboxRow,
    Ticket,
    TicketEvent,
    table_of,
)
from store.outbox import STAFF_PURPOSES
from tests.connectors.twilio.conftest import FakeTwilio, fixture, signed
from tests.connectors.twilio.test_connector import (
    CITIZEN,
    FAST_DISPATCH,
    PUBLIC_URL,
    SMS_NUMBER,
    Town,
    twilio_env,
)
from tests.service import sample_config, until

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[Client]]

VOICE = "/webhooks/twilio/voice"
MENU = f"{VOICE}/menu"
DIAL = f"{VOICE}/dial-status"
RECORDING = f"{VOICE}/recording"
TRANSCRIPTION = f"{VOICE}/transcription"
CALL_STATUS = f"{VOICE}/status"
FRONT_DESK = "+3250999888"
CALL_SID = "CA5f0e1d2c3b4a59687766554433221100"
RECORDING_SID = "RE7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a21"
# Monday 16 November 2026 in Brussels (UTC+1): 10:00 is office hours, 20:00 is not.
OPEN = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)
CLOSED = datetime(2026, 11, 16, 19, 0, tzinfo=UTC)
# Thursday 24 December 2026, 10:00 in Brussels: a weekday, but a closed day in the sample.
CLOSED_DAY = datetime(2026, 12, 24, 9, 0, tzinfo=UTC)
VOICEMAIL = b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 4

TICKETS = table_of(Ticket)
MESSAGES = table_of(Message)
OUTBOX = table_of(OutboxRow)
EVENTS = table_of(TicketEvent)
JOURNAL = table_of(JournalEntry)

StartLine = Callable[..., Awaitable[Town]]


def twiml(text: str) -> ET.Element:
    # The service's own answer in a test, not untrusted input.
    return ET.fromstring(text)  # noqa: S314


def connector(town: Town) -> TwilioConnector:
    found = town.client.app[RUNTIME].connectors[Channel.VOICE]
    assert isinstance(found, TwilioConnector)
    return found


@pytest.fixture
def start_line(
    tmp_path: Path,
    database_url: str,
    aiohttp_client: ClientFactory,
    monkeypatch: pytest.MonkeyPatch,
    fake_twilio: FakeTwilio,
) -> StartLine:
    async def start(*, at: datetime = CLOSED, **env: str) -> Town:
        twilio_env(monkeypatch, fake_twilio)
        monkeypatch.setenv("TWILIO_VOICE_FRONT_DESK", FRONT_DESK)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        config = sample_config(tmp_path, database_url, monkeypatch, replace=dict([FAST_DISPATCH]))
        town = Town(await aiohttp_client(create_app(config, migrate=True)), fake_twilio)
        connector(town).voice.clock = lambda: at
        fake_twilio.media[f"{RECORDING_SID}.mp3"] = ("audio/mpeg", VOICEMAIL)
        return town

    return start


@pytest.fixture
async def line(start_line: StartLine) -> Town:
    return await start_line()


def recording(town: Town, **fields: str) -> dict[str, str]:
    return fixture(
        "voice_recording", RecordingUrl=town.twilio.recording_url(RECORDING_SID), **fields
    )


async def test_within_office_hours_the_call_rings_the_front_desk(start_line: StartLine) -> None:
    town = await start_line(at=OPEN)
    response = await town.post(VOICE, fixture("voice_incoming"))
    assert response.status == 200
    assert response.content_type == "text/xml"
    root = twiml(await response.text())
    say, dial = list(root)
    assert say.tag == "Say" and say.get("language") == "nl-BE"
    assert say.text == "Welkom bij het contactpunt van de gemeente Wingene."
    assert (dial.tag, dial.text) == ("Dial", FRONT_DESK)
    assert dial.get("timeout") == "20"
    assert dial.get("action") == f"{PUBLIC_URL}{DIAL}"
    # A call is not a message: nothing is stored until it leaves something behind.
    assert await town.rows(JournalEntry) == []


@pytest.mark.parametrize("at", [CLOSED, CLOSED_DAY], ids=["evening", "closed day"])
async def test_outside_office_hours_the_caller_gets_the_voicemail(
    start_line: StartLine, at: datetime
) -> None:
    town = await start_line(at=at)
    root = twiml(await (await town.post(VOICE, fixture("voice_incoming"))).text())
    assert [e.tag for e in root] == ["Say", "Say", "Record", "Say", "Hangup"]
    assert root.find("Dial") is None
    record = root.find("Record")
    assert record is not None
    assert record.get("action") == f"{PUBLIC_URL}{RECORDING}"
    assert record.get("transcribe") == "true"
    assert record.get("transcribeCallback") == f"{PUBLIC_URL}{TRANSCRIPTION}"
    assert record.get("maxLength") == "120"


async def test_the_menu_choice_sets_the_kind_of_the_voicemail_ticket(
    start_line: StartLine,
) -> None:
    town = await start_line(TWILIO_VOICE_MENU="true")
    root = twiml(await (await town.post(VOICE, fixture("voice_incoming"))).text())
    gather = root.find("Gather")
    assert gather is not None and gather.get("numDigits") == "1"
    assert gather.get("action") == f"{PUBLIC_URL}{MENU}"
    assert "druk 1 voor een melding" in "".join(gather.itertext()).lower()

    chosen = twiml(await (await town.post(MENU, fixture("voice_gather", Digits="2"))).text())
    record = chosen.find("Record")
    assert record is not None
    action = record.get("action") or ""
    assert action == f"{PUBLIC_URL}{RECORDING}?kind=question"
    assert record.get("transcribeCallback") == f"{PUBLIC_URL}{TRANSCRIPTION}?kind=question"

    path = urlsplit(action)
    response = await town.post(f"{path.path}?{path.query}", recording(town))
    assert response.status == 200
    [ticket] = await town.rows(Ticket)
    assert (ticket["kind"], ticket["origin_channel"]) == ("question", "voice")
    assert parse_qs(path.query) == {"kind": ["question"]}


async def test_the_menu_choice_goes_to_the_front_desk_within_office_hours(
    start_line: StartLine,
) -> None:
    town = await start_line(at=OPEN, TWILIO_VOICE_MENU="true")
    root = twiml(await (await town.post(MENU, fixture("voice_gather", Digits="3"))).text())
    dial = root.find("Dial")
    assert dial is not None and dial.get("action") == f"{PUBLIC_URL}{DIAL}?kind=complaint"


async def test_a_voicemail_becomes_a_ticket_with_its_recording_and_transcription(
    line: Town,
) -> None:
    response = await line.post(RECORDING, recording(line))
    assert response.status == 200
    assert [e.tag for e in twiml(await response.text())] == ["Say", "Hangup"]

    [ticket] = await line.rows(Ticket)
    assert (ticket["origin_channel"], ticket["reply_channel"]) == ("voice", "sms")
    assert ticket["reply_address"] == CITIZEN
    [message] = await line.rows(Message, MESSAGES.c.direction == "in")
    assert message["external_id"] == CALL_SID
    assert message["text"] == (f"Voicemail van {CITIZEN} (42 s). De uitgeschreven tekst volgt.")
    [attachment] = await line.rows(AttachmentRow)
    assert (attachment["filename"], attachment["content_type"]) == (
        f"voicemail-{CALL_SID}.mp3",
        "audio/mpeg",
    )
    assert attachment["size"] == len(VOICEMAIL) and attachment["removed_reason"] is None
    assert await line.client.app[RUNTIME].files.get(attachment["sha256"]) == VOICEMAIL

    # The caller is acknowledged by SMS, as any citizen whose message became a ticket.
    [ack] = await line.wait_for_sent(1)
    assert (ack["To"], ack["From"]) == (CITIZEN, SMS_NUMBER)

    response = await line.post(TRANSCRIPTION, fixture("voice_transcription"))
    assert response.status == 200
    [message] = await line.rows(Message, MESSAGES.c.direction == "in")
    assert message["text"].startswith(f"Voicemail van {CITIZEN} (42 s).")
    assert "de straatlamp in de Kerkstraat brandt al een week niet." in message["text"]
    [event] = await line.rows(TicketEvent, EVENTS.c.type == "transcription_added")
    assert event["data"]["message_id"] == message["id"]

    # Twilio retrying the transcription adds nothing twice.
    await line.post(TRANSCRIPTION, fixture("voice_transcription"))
    [again] = await line.rows(Message, MESSAGES.c.direction == "in")
    assert again["text"] == message["text"]


async def test_a_redelivered_recording_callback_makes_one_ticket(line: Town) -> None:
    for _ in range(2):
        assert (await line.post(RECORDING, recording(line))).status == 200
    assert len(await line.rows(Ticket)) == 1
    assert len(await line.rows(Message, MESSAGES.c.direction == "in")) == 1
    # The voicemail is the call's outcome: its end is no missed call.
    assert (await line.post(CALL_STATUS, fixture("voice_status_completed"))).status == 204
    assert len(await line.rows(Ticket)) == 1


async def test_a_recording_that_cannot_be_fetched_still_makes_the_ticket(line: Town) -> None:
    line.twilio.media.clear()
    assert (await line.post(RECORDING, recording(line))).status == 200
    [attachment] = await line.rows(AttachmentRow)
    assert attachment["sha256"] is None
    assert attachment["removed_reason"] == "could not be downloaded from Twilio (HTTP 404)"
    assert len(await line.rows(Ticket)) == 1


async def test_a_transcription_for_an_unknown_call_is_journalled_and_answered(
    line: Town,
) -> None:
    response = await line.post(TRANSCRIPTION, fixture("voice_transcription", CallSid="CAnope"))
    assert response.status == 200
    [entry] = await line.rows(JournalEntry)
    assert (entry["external_id"], entry["state"]) == ("text:CAnope", "ignored")
    assert entry["error"] == "no inbound message has this id"
    assert await line.rows(Ticket) == []


@pytest.mark.parametrize("status", ["no-answer", "busy", "canceled", "completed"])
async def test_a_missed_call_becomes_one_call_back_ticket(line: Town, status: str) -> None:
    form = fixture("voice_status_no_answer", CallStatus=status)
    for _ in range(2):
        assert (await line.post(CALL_STATUS, form)).status == 204
    [ticket] = await line.rows(Ticket)
    assert ticket["origin_channel"] == "voice"
    [message] = await line.rows(Message, MESSAGES.c.direction == "in")
    assert message["external_id"] == f"missed:{CALL_SID}"
    assert message["text"] == f"Gemiste oproep van {CITIZEN}: terugbellen."
    # No SMS to someone who only hung up: the acknowledgement is skipped, visibly. (The test's
    # frozen call time lies days back, so staff may already hear of the missed deadline.)
    assert await line.rows(OutboxRow, OUTBOX.c.purpose.not_in(STAFF_PURPOSES)) == []
    [skipped] = await line.rows(TicketEvent, EVENTS.c.type == "acknowledgement_skipped")
    assert skipped["ticket_id"] == ticket["id"]
    assert skipped["data"]["reason"] == "a phone call: the caller asked for no message"


async def test_an_unanswered_front_desk_leads_to_voicemail_or_a_call_back_ticket(
    start_line: StartLine,
) -> None:
    town = await start_line(at=OPEN)
    response = await town.post(DIAL, fixture("voice_dial_no_answer"))
    assert response.status == 200
    record = twiml(await response.text()).find("Record")
    assert record is not None and record.get("action") == f"{PUBLIC_URL}{RECORDING}"
    # The caller hangs up at the voicemail prompt.
    assert (await town.post(CALL_STATUS, fixture("voice_status_completed"))).status == 204
    [message] = await town.rows(Message, MESSAGES.c.direction == "in")
    assert message["text"] == f"Gemiste oproep van {CITIZEN}: terugbellen."


async def test_a_call_answered_at_the_front_desk_is_an_event_on_the_contact(
    start_line: StartLine,
) -> None:
    town = await start_line(at=OPEN)
    response = await town.post(DIAL, fixture("voice_dial_completed"))
    assert response.status == 200
    assert [e.tag for e in twiml(await response.text())] == ["Hangup"]
    # Twilio redelivers a callback it got no timely answer to: still one event.
    assert (await town.post(DIAL, fixture("voice_dial_completed"))).status == 200
    assert (await town.post(CALL_STATUS, fixture("voice_status_completed"))).status == 204
    assert await town.rows(Ticket) == []
    [event] = await town.rows(ContactEvent)
    [identity] = await town.rows(ContactIdentity)
    assert (event["channel"], event["type"], event["external_id"]) == (
        "voice",
        "call_answered",
        f"answered:{CALL_SID}",
    )
    assert event["contact_id"] == identity["contact_id"]
    assert (identity["kind"], identity["value"]) == ("phone", CITIZEN)
    assert event["data"] == {
        "caller": CITIZEN,
        "duration_seconds": 184,
        "call_sid": CALL_SID,
        "answered_by": FRONT_DESK,
        "answered_call_sid": "CAd1a2b3c4d5e6f70809a0b0c0d0e0f001",
    }
    assert event["ticket_id"] is None
    entries = await town.rows(JournalEntry)
    assert [(e["external_id"], e["state"]) for e in entries] == [
        (f"answered:{CALL_SID}", "processed"),
        (f"answered:{CALL_SID}", "duplicate"),
    ]


async def test_the_front_desk_turns_an_answered_call_into_a_ticket_answered_by_sms(
    start_line: StartLine,
) -> None:
    town = await start_line(at=OPEN)
    await town.post(DIAL, fixture("voice_dial_completed"))
    [event] = await town.rows(ContactEvent)
    response = await town.client.post(
        f"/api/v1/contact-events/{event['id']}/ticket",
        json={"kind": "question", "text": "Wanneer is het containerpark open?"},
        headers={"Authorization": f"Bearer {await town.staff_token()}"},
    )
    assert response.status == 201, await response.text()
    reference = (await response.json())["ticket_reference"]
    [ticket] = await town.rows(Ticket)
    assert (ticket["reference"], ticket["kind"]) == (reference, "question")
    assert (ticket["reply_channel"], ticket["reply_address"]) == ("sms", CITIZEN)
    # The caller was on the phone with the front desk: no SMS acknowledgement.
    assert await town.rows(OutboxRow) == []
    await town.reply(reference, "Het containerpark is open tot 17 uur.")
    [answer] = await town.wait_for_sent(1)
    assert (answer["To"], answer["Body"]) == (CITIZEN, "Het containerpark is open tot 17 uur.")


async def test_an_answered_call_from_a_hidden_number_is_only_journalled(
    start_line: StartLine,
) -> None:
    town = await start_line(at=OPEN)
    form = fixture("voice_dial_completed", From="anonymous", Caller="anonymous")
    assert (await town.post(DIAL, form)).status == 200
    assert await town.rows(ContactEvent) == []
    [entry] = await town.rows(JournalEntry)
    assert (entry["external_id"], entry["state"]) == (f"answered:{CALL_SID}", "ignored")


async def test_an_answer_to_a_voice_ticket_goes_by_sms_to_the_caller(line: Town) -> None:
    await line.post(RECORDING, recording(line))
    await line.wait_for_sent(1)
    await line.reply("1750-000001", "De straatlamp wordt morgen hersteld.")
    _, answer = await line.wait_for_sent(2)
    assert (answer["To"], answer["From"]) == (CITIZEN, SMS_NUMBER)
    assert answer["Body"] == "De straatlamp wordt morgen hersteld."


async def test_without_reply_by_sms_the_answer_waits_for_an_email_address(
    start_line: StartLine,
) -> None:
    town = await start_line(TWILIO_VOICE_REPLY_BY_SMS="false")
    await town.post(RECORDING, recording(town))
    [ticket] = await town.rows(Ticket)
    assert ticket["reply_channel"] == "email" and ticket["reply_address"] is None
    await town.reply("1750-000001", "We bellen u terug.")

    async def settled() -> bool:
        rows = await town.rows(OutboxRow, OUTBOX.c.purpose == "reply")
        return bool(rows) and rows[0]["reason"] is not None

    await until(settled, "the reply's outbox row says why it waits")
    [row] = await town.rows(OutboxRow, OUTBOX.c.purpose == "reply")
    assert (row["channel"], row["recipient"]) == ("email", None)
    assert town.twilio.sent() == []


def _bodies(town: Town) -> dict[str, dict[str, str]]:
    return {
        VOICE: fixture("voice_incoming"),
        MENU: fixture("voice_gather"),
        DIAL: fixture("voice_dial_completed"),
        RECORDING: recording(town),
        TRANSCRIPTION: fixture("voice_transcription"),
        CALL_STATUS: fixture("voice_status_no_answer"),
    }


@pytest.mark.parametrize("path", [VOICE, MENU, DIAL, RECORDING, TRANSCRIPTION, CALL_STATUS])
@pytest.mark.parametrize("problem", ["valid", "bad", "missing", "other token", "query changed"])
async def test_each_voice_webhook_checks_the_signature(line: Town, path: str, problem: str) -> None:
    form = _bodies(line)[path]
    response: Any
    if problem == "valid":
        response = await line.post(path, form)
        assert response.status in (200, 204)
        return
    if problem in ("bad", "missing"):
        body, headers = signed(f"{PUBLIC_URL}{path}", form)
        if problem == "bad":
            headers["X-Twilio-Signature"] = "AAAA" + headers["X-Twilio-Signature"][4:]
        else:
            del headers["X-Twilio-Signature"]
        response = await line.client.post(path, data=body, headers=headers)
    elif problem == "other token":
        response = await line.post(path, form, token="f" * 32)
    else:
        # Signed without the kind: a kind added on the way would not be Twilio's.
        body, headers = signed(f"{PUBLIC_URL}{path}", form)
        response = await line.client.post(f"{path}?kind=complaint", data=body, headers=headers)
    assert response.status == 403
    assert await line.rows(JournalEntry) == []
    assert await line.rows(Ticket) == []


async def test_staff_record_that_they_called_the_citizen_back(line: Town) -> None:
    await line.post(CALL_STATUS, fixture("voice_status_no_answer"))
    headers = {"Authorization": f"Bearer {await line.staff_token()}"}
    url = "/api/v1/tickets/1750-000001/called-back"

    response = await line.client.post(
        url, json={"note": "Lamp Kerkstraat, doorgegeven."}, headers=headers
    )
    assert response.status == 201, await response.text()
    event = await response.json()
    assert event["type"] == "called_back"
    assert event["actor"]["email"] == "els@wingene.example"
    assert event["data"] == {"note": "Lamp Kerkstraat, doorgegeven."}

    # The note is optional, and so is the body.
    assert (await line.client.post(url, headers=headers)).status == 201
    assert (await line.client.post(url, json={"called": True}, headers=headers)).status == 422
    assert (await line.client.post(url.replace("000001", "000099"), headers=headers)).status == 404
    assert (await line.client.post(url)).status == 401

    detail = await (await line.client.get("/api/v1/tickets/1750-000001", headers=headers)).json()
    called = [e for e in detail["events"] if e["type"] == "called_back"]
    assert [e["data"]["note"] for e in called] == ["Lamp Kerkstraat, doorgegeven.", None]


async def test_a_voicemail_reported_after_the_calls_end_joins_the_call_back_ticket(
    line: Town,
) -> None:
    # Twilio may post the final status before the recording: the call then looks missed, and
    # the voicemail that follows continues that ticket rather than opening a second one.
    await line.post(CALL_STATUS, fixture("voice_status_completed"))
    await line.post(RECORDING, recording(line))
    [ticket] = await line.rows(Ticket)
    texts = [m["text"] for m in await line.rows(Message, MESSAGES.c.direction == "in")]
    assert len(texts) == 2 and texts[0].startswith("Gemiste oproep")
    assert ticket["conversation"] == f"voice:{CITIZEN}"


async def test_without_transcription_the_voicemail_promises_no_text(
    tmp_path: Path,
    database_url: str,
    aiohttp_client: ClientFactory,
    monkeypatch: pytest.MonkeyPatch,
    fake_twilio: FakeTwilio,
) -> None:
    twilio_env(monkeypatch, fake_twilio)
    config = sample_config(
        tmp_path, database_url, monkeypatch, replace={"transcribe: true": "transcribe: false"}
    )
    town = Town(await aiohttp_client(create_app(config, migrate=True)), fake_twilio)
    connector(town).voice.clock = lambda: CLOSED
    record = twiml(await (await town.post(VOICE, fixture("voice_incoming"))).text()).find("Record")
    assert record is not None
    assert record.get("transcribe") is None and record.get("transcribeCallback") is None
    await town.post(RECORDING, recording(town))
    [message] = await town.rows(Message, MESSAGES.c.direction == "in")
    assert message["text"] == f"Voicemail van {CITIZEN} (42 s)."
