"""The web chat end to end: the whole service, a widget's WebSocket, staff answering by the API.

What a visitor sees is what arrives on their socket; what staff and the dispatcher did is read
from the database; answers that leave by e-mail are what the SMTP server received.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import Message as EmailMessage
from email.policy import default as default_policy
from pathlib import Path

import aiohttp
import pytest

from connectors.webchat.protocol import visitor_of, visitor_token
from meldpunt.app import RUNTIME
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
from tests.connectors.webchat.conftest import PUBLIC_URL, SITE, StartTown, Town
from tests.messages import inbound
from tests.service import until

MESSAGES = table_of(Message)
OUTBOX = table_of(OutboxRow)
EVENTS = table_of(TicketEvent)
IDENTITIES = table_of(ContactIdentity)

# Sunday 22 November 2026, 15:00 in Brussels: closed (the sample config has no Sunday hours).
SUNDAY = datetime(2026, 11, 22, 14, 0, tzinfo=UTC)
# Monday 23 November 2026, 10:00 in Brussels: open.
MONDAY = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def staff(frame: dict[str, object]) -> bool:
    return frame["from"] == "staff"


def mail_text(raw: bytes) -> str:
    mail = message_from_bytes(raw, policy=default_policy)
    assert isinstance(mail, EmailMessage)
    body = mail.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


async def sent_acknowledgements(town: Town, count: int) -> None:
    await town.wait_for_rows(
        count, OutboxRow, OUTBOX.c.purpose == "acknowledgement", OUTBOX.c.state == "sent"
    )


# --- hello and the visitor token ----------------------------------------------------------------


async def test_a_new_visitor_is_welcomed_with_a_signed_token_and_the_town_s_hours(
    town: Town,
) -> None:
    visitor = await town.open_chat(lang="fr")
    welcome = visitor.welcome
    assert visitor_of(town.chat.context.secret_key, visitor.token) == visitor.id
    assert welcome["lang"] == "fr"
    assert welcome["transcript"] == []
    assert (welcome["queue"], welcome["reference"]) == (None, None)
    assert welcome["contact"] == {"email": False, "phone": False}
    assert welcome["limits"] == {
        "max_chars": 2000,
        "max_upload_bytes": 5 * 1024 * 1024,
        "upload_types": ["image/jpeg", "image/png", "image/webp", "image/gif"],
    }
    assert welcome["timezone"] == "Europe/Brussels"
    schedule = {day["day"]: day["spans"] for day in welcome["schedule"]}
    assert schedule["monday"] == ["08:30-12:00", "13:30-16:30"]
    assert schedule["sunday"] == []
    assert isinstance(welcome["open"], bool)
    assert (welcome["next_open"] is None) is welcome["open"]
    # Saying hello stores nothing: a visitor who never writes leaves no trace.
    assert await town.rows(ContactIdentity) == []

    # The same token again is the same visitor.
    again = await town.open_chat(visitor.token)
    assert again.token == visitor.token


@pytest.mark.parametrize(
    "token",
    [
        "forged",
        "AAAAAAAAAAAAAAAAAAAAAA.not-the-signature",
        visitor_token(b"another town's key", "AAAAAAAAAAAAAAAAAAAAAA"),
        "",
        7,
    ],
)
async def test_a_token_that_is_not_ours_makes_a_new_visitor(town: Town, token: object) -> None:
    ws = await town.connect()
    await ws.send_str(json.dumps({"type": "hello", "visitor": token, "lang": "nl"}))
    welcome = json.loads((await ws.receive(timeout=10)).data)
    assert welcome["type"] == "welcome"
    assert welcome["visitor"] != token
    assert not welcome["visitor"].startswith("AAAAAAAAAAAAAAAAAAAAAA.")
    await ws.close()


async def test_a_socket_must_say_hello_first(town: Town) -> None:
    ws = await town.connect()
    await ws.send_str(json.dumps({"type": "message", "client_id": "c1", "text": "Hallo"}))
    error = json.loads((await ws.receive(timeout=10)).data)
    assert (error["type"], error["code"]) == ("error", "bad_frame")
    closing = await ws.receive(timeout=10)
    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert await town.rows(Message) == []


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "https://www.wingene.example.evil.example", None, "null"]
)
async def test_a_socket_from_a_site_that_is_not_allowed_is_refused_before_the_upgrade(
    town: Town, origin: str | None
) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await town.connect(origin)
    assert refused.value.status == 403


@pytest.mark.parametrize("origin", [SITE, "HTTPS://WWW.WINGENE.EXAMPLE:443", PUBLIC_URL])
async def test_the_town_s_site_and_meldpunt_itself_may_open_the_chat(
    town: Town, origin: str
) -> None:
    visitor = await town.open_chat(origin=origin)
    await visitor.send(type="ping")
    assert await visitor.frame("pong") == {"type": "pong"}


# --- messages -----------------------------------------------------------------------------------


async def test_a_message_becomes_a_ticket_and_the_visitor_gets_its_reference(town: Town) -> None:
    visitor = await town.open_chat()
    client_id = str(uuid.uuid4())
    received = await visitor.say("De straatlamp aan de kerk is kapot.", client_id)
    assert received["type"] == "received"
    assert received["reference"] == "1750-000001"
    assert received["id"] == f"v-{client_id}"
    assert datetime.fromisoformat(received["at"]).tzinfo is not None

    [ticket] = await town.rows(Ticket)
    assert ticket["origin_channel"] == "webchat"
    assert (ticket["reply_channel"], ticket["reply_address"]) == ("webchat", visitor.id)
    assert ticket["conversation"] == f"webchat:{visitor.id}"
    assert ticket["department"] == "technical-service"
    [message] = await town.rows(Message, MESSAGES.c.direction == "in")
    assert message["external_id"] == f"{visitor.id}:{client_id}"
    assert message["text"] == "De straatlamp aan de kerk is kapot."
    [identity] = await town.rows(ContactIdentity)
    assert (identity["kind"], identity["value"]) == ("webchat", visitor.id)

    # The acknowledgement shows as a system line, and the visitor is first in the queue.
    ack = await visitor.frame("message")
    assert ack["from"] == "system" and "1750-000001" in ack["text"]
    assert (await visitor.frame("queue", lambda f: f["position"] is not None))["position"] == 1

    # The conversation goes on in the same ticket.
    again = await visitor.say("Het is de derde lamp links.")
    assert again["reference"] == "1750-000001"
    assert len(await town.rows(Ticket)) == 1


async def test_a_message_sent_again_after_a_reconnect_is_stored_once(town: Town) -> None:
    visitor = await town.open_chat()
    first = await visitor.say("Er ligt glas op het fietspad.", "resend-1")
    await visitor.close()
    again = await town.open_chat(visitor.token)
    second = await again.say("Er ligt glas op het fietspad.", "resend-1")
    assert second["type"] == "received"
    assert second["reference"] == first["reference"]
    assert second["id"] == first["id"]
    assert len(await town.rows(Message, MESSAGES.c.direction == "in")) == 1
    states = [j["state"] for j in await town.rows(JournalEntry)]
    assert states == ["processed", "duplicate"]


async def test_a_returning_visitor_finds_the_conversation_in_the_transcript(town: Town) -> None:
    visitor = await town.open_chat()
    await visitor.say("Wanneer wordt het grofvuil opgehaald?", "q-1")
    await sent_acknowledgements(town, 1)
    await visitor.close()

    back = await town.open_chat(visitor.token)
    lines = back.welcome["transcript"]
    assert [(line["from"], line["client_id"]) for line in lines] == [
        ("visitor", "q-1"),
        ("system", None),
    ]
    assert lines[0]["id"] == "v-q-1"
    assert lines[0]["text"] == "Wanneer wordt het grofvuil opgehaald?"
    assert "1750-000001" in lines[1]["text"]
    assert back.welcome["reference"] == "1750-000001"
    assert back.welcome["queue"] == {"position": 1}

    # Another visitor does not see it.
    stranger = await town.open_chat()
    assert stranger.welcome["transcript"] == []


@pytest.mark.parametrize(
    ("text", "code"),
    [("x" * 2001, "too_long"), ("   \n ", "empty"), ("", "empty")],
)
async def test_an_empty_or_too_long_message_is_refused_and_nothing_stored(
    town: Town, text: str, code: str
) -> None:
    visitor = await town.open_chat()
    error = await visitor.say(text, "bad-1")
    assert (error["type"], error["code"], error["client_id"]) == ("error", code, "bad-1")
    assert error["message"]
    assert await town.rows(JournalEntry) == []
    assert await town.rows(Message) == []
    # Exactly at the limit is fine.
    assert (await visitor.say("y" * 2000))["type"] == "received"


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "[1, 2]",
        json.dumps({"type": "shout", "text": "HALLO"}),
        json.dumps({"type": "message", "client_id": "has spaces", "text": "x"}),
        json.dumps({"type": "message", "client_id": "c-1", "text": 12}),
        json.dumps({"type": "hello", "visitor": None}),
    ],
)
async def test_a_frame_outside_the_protocol_gets_bad_frame_and_the_chat_goes_on(
    town: Town, frame: str
) -> None:
    visitor = await town.open_chat()
    await visitor.ws.send_str(frame)
    error = await visitor.frame("error")
    assert error["code"] == "bad_frame"
    await visitor.ws.send_bytes(b"\x00\x01")
    assert (await visitor.frame("error"))["code"] == "bad_frame"
    assert (await visitor.say("Toch nog een vraag."))["type"] == "received"
    assert len(await town.rows(JournalEntry)) == 1


async def test_intake_down_says_unavailable_and_stores_nothing(town: Town) -> None:
    visitor = await town.open_chat()
    await town.client.app[RUNTIME].intake.stop()
    error = await visitor.say("Hallo?", "later-1")
    assert (error["code"], error["client_id"]) == ("unavailable", "later-1")
    assert await town.rows(Message) == []


async def test_a_visitor_writing_too_fast_is_rate_limited_and_stays_connected(
    start_town: StartTown,
) -> None:
    town = await start_town(**{"messages_per_minute: 20 ": "messages_per_minute: 2 "})
    visitor = await town.open_chat()
    assert (await visitor.say("Een"))["type"] == "received"
    assert (await visitor.say("Twee"))["type"] == "received"
    error = await visitor.say("Drie", "third")
    assert (error["code"], error["client_id"]) == ("rate_limited", "third")
    await visitor.send(type="ping")
    await visitor.frame("pong")
    assert len(await town.rows(Message, MESSAGES.c.direction == "in")) == 2
    # Another visitor is not held back by the first.
    other = await town.open_chat()
    assert (await other.say("Vier"))["type"] == "received"


async def test_a_flood_of_frames_gets_rate_limited_errors_not_a_crash(town: Town) -> None:
    visitor = await town.open_chat()
    for _ in range(100):
        await visitor.send(type="typing")
    error = await visitor.frame("error")
    assert error["code"] == "rate_limited"
    assert town.client.app[RUNTIME].connectors  # still serving
    other = await town.open_chat()
    await other.send(type="ping")
    await other.frame("pong")


async def test_a_frame_far_over_the_size_limit_closes_only_that_socket(town: Town) -> None:
    visitor = await town.open_chat()
    await visitor.ws.send_str(
        json.dumps({"type": "message", "client_id": "x", "text": "x" * 20_000})
    )
    closing = await visitor.ws.receive(timeout=10)
    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert visitor.ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    again = await town.open_chat(visitor.token)
    assert (await again.say("Korter."))["type"] == "received"


async def test_one_address_cannot_make_new_visitors_without_end(start_town: StartTown) -> None:
    town = await start_town(
        **{"new_visitors_per_address_per_hour: 60 ": "new_visitors_per_address_per_hour: 2 "}
    )
    first = await town.open_chat()
    await town.open_chat()
    ws = await town.connect()
    await ws.send_str(json.dumps({"type": "hello", "visitor": None, "lang": "en"}))
    error = json.loads((await ws.receive(timeout=10)).data)
    assert (error["type"], error["code"]) == ("error", "rate_limited")
    assert (await ws.receive(timeout=10)).type in (
        aiohttp.WSMsgType.CLOSE,
        aiohttp.WSMsgType.CLOSED,
    )
    # A visitor who already has a token comes back in.
    again = await town.open_chat(first.token)
    assert again.token == first.token


async def test_behind_a_trusted_proxy_the_forwarded_address_counts(
    start_town: StartTown,
) -> None:
    town = await start_town(
        **{
            "new_visitors_per_address_per_hour: 60 ": "new_visitors_per_address_per_hour: 1 ",
            "trusted_proxies: []                       #": 'trusted_proxies: ["127.0.0.0/8"] #',
        }
    )

    async def hello(forwarded: str) -> str:
        ws = await town.connect(headers={"X-Forwarded-For": forwarded})
        await ws.send_str(json.dumps({"type": "hello", "visitor": None}))
        frame = json.loads((await ws.receive(timeout=10)).data)
        await ws.close()
        return str(frame["type"])

    # Two citizens behind the proxy each get their new visitor; the second hello of one does not.
    assert await hello("198.51.100.7") == "welcome"
    assert await hello("203.0.113.9") == "welcome"
    assert await hello("192.0.2.1, 198.51.100.7") == "error"


# --- the queue and staff answers ----------------------------------------------------------------


async def test_two_visitors_queue_and_a_live_answer_moves_the_next_one_up(town: Town) -> None:
    first = await town.open_chat()
    second = await town.open_chat()
    ref_first = (await first.say("Mijn vuilnis is niet opgehaald."))["reference"]
    await second.say("Waar kan ik een parkeerkaart aanvragen?")

    assert (await first.frame("queue", lambda f: f["position"] == 1))["position"] == 1
    assert (await second.frame("queue", lambda f: f["position"] == 2))["position"] == 2

    reply = await town.reply(ref_first, "We halen het morgen op.")
    answer = await first.frame("message", staff)
    assert answer["text"] == "We halen het morgen op."
    assert answer["id"].startswith("o-")
    assert answer["client_id"] is None
    assert await first.frame("queue", lambda f: f["position"] is None)
    assert await second.frame("queue", lambda f: f["position"] == 1)

    [row] = await town.wait_for_rows(
        1, OutboxRow, OUTBOX.c.purpose == "reply", OUTBOX.c.state == "sent"
    )
    assert (row["channel"], row["recipient"]) == ("webchat", first.id)
    assert answer["id"] == f"o-{row['id']}"
    [message] = await town.rows(Message, MESSAGES.c.id == reply["id"])
    assert message["delivery_status"] == "delivered"

    # The answer is in the transcript under the same id when the visitor comes back.
    back = await town.open_chat(first.token)
    assert [line["id"] for line in back.welcome["transcript"] if line["from"] == "staff"] == [
        answer["id"]
    ]
    assert back.welcome["queue"] is None


async def test_every_open_tab_of_a_visitor_gets_the_answer(town: Town) -> None:
    tab = await town.open_chat()
    other_tab = await town.open_chat(tab.token)
    received = await tab.say("Mag ik een container plaatsen?", "tab-1")
    reference = received["reference"]
    # The other tab shows what was written in the first one.
    mine = await other_tab.frame("message", lambda f: f["from"] == "visitor")
    assert (mine["id"], mine["client_id"]) == (received["id"], "tab-1")
    assert mine["text"] == "Mag ik een container plaatsen?"
    await town.reply(reference, "Ja, met een vergunning.")
    for socket in (tab, other_tab):
        assert (await socket.frame("message", staff))["text"] == "Ja, met een vergunning."


async def test_a_staff_photo_reaches_the_visitor_as_a_link_only_they_can_open(town: Town) -> None:
    visitor = await town.open_chat()
    reference = (await visitor.say("Waar is het containerpark?"))["reference"]
    await town.reply(
        reference,
        "Hier is het plan.",
        attachments=[
            {
                "filename": "plan.png",
                "content_type": "image/png",
                "content_base64": base64.b64encode(PNG).decode(),
            }
        ],
    )
    answer = await visitor.frame("message", staff)
    [link] = answer["attachments"]
    assert (link["name"], link["content_type"]) == ("plan.png", "image/png")
    assert link["url"].startswith("/chat/files/")

    response = await town.client.get(link["url"], params={"visitor": visitor.token})
    assert response.status == 200
    assert await response.read() == PNG
    assert response.headers["Content-Type"] == "image/png"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Disposition"].startswith('inline; filename="plan.png"')
    stranger = await town.open_chat()
    response = await town.client.get(link["url"], params={"visitor": stranger.token})
    assert response.status == 404


async def test_an_answer_for_a_visitor_who_left_goes_to_the_e_mail_they_left(town: Town) -> None:
    visitor = await town.open_chat()
    reference = (await visitor.say("Mijn straat is niet gestrooid."))["reference"]
    await visitor.send(type="contact", email="  An.Peeters@Example.BE ", phone=None)
    assert await visitor.frame("contact_saved") == {
        "type": "contact_saved",
        "email": True,
        "phone": False,
    }
    # The address is on the visitor's contact, as an identity the dispatcher can use.
    [chat_id] = await town.rows(ContactIdentity, IDENTITIES.c.kind == "webchat")
    [email] = await town.rows(ContactIdentity, IDENTITIES.c.kind == "email")
    assert email["value"] == "an.peeters@example.be"
    assert email["contact_id"] == chat_id["contact_id"]
    [event] = await town.rows(ContactEvent)
    assert event["type"] == "contact_details_left"
    assert event["channel"] == "webchat"
    assert event["data"]["email"] == "an.peeters@example.be"
    await sent_acknowledgements(town, 1)
    await visitor.close()

    await town.reply(reference, "We sturen de strooiwagen.")
    await town.wait_for_mail(1)
    [mail] = town.smtp.received
    assert mail.rcpt_tos == ["an.peeters@example.be"]
    assert "We sturen de strooiwagen." in mail_text(mail.raw)
    [row] = await town.wait_for_rows(
        1, OutboxRow, OUTBOX.c.purpose == "reply", OUTBOX.c.state == "sent"
    )
    assert (row["channel"], row["recipient"]) == ("email", "an.peeters@example.be")
    assert row["reason"].endswith("window closed: sent by e-mail instead")
    [closed] = await town.rows(TicketEvent, EVENTS.c.type == "reply_window_closed")
    assert closed["data"]["action"] == "rerouted"

    # Back in the chat, the visitor reads the answer there too.
    back = await town.open_chat(visitor.token)
    assert back.welcome["contact"] == {"email": True, "phone": False}
    assert [line["text"] for line in back.welcome["transcript"] if line["from"] == "staff"] == [
        "We sturen de strooiwagen."
    ]


async def test_an_address_that_belongs_to_another_contact_is_recorded_but_not_moved(
    town: Town,
) -> None:
    # The citizen mailed the town before; in the chat they are someone new until they say so.
    await town.client.app[RUNTIME].intake.submit(inbound(email="jo@example.be"))
    visitor = await town.open_chat()
    await visitor.say("Ik mailde al eerder.")
    await visitor.send(type="contact", email="jo@example.be", phone=None)
    saved = await visitor.frame("contact_saved")
    # Said as it is: an answer would not reach that address from this chat's contact.
    assert (saved["email"], saved["phone"]) == (False, False)
    [chat_id] = await town.rows(ContactIdentity, IDENTITIES.c.kind == "webchat")
    [email] = await town.rows(ContactIdentity, IDENTITIES.c.kind == "email")
    assert email["contact_id"] != chat_id["contact_id"]
    [event] = await town.rows(ContactEvent)
    assert event["contact_id"] == chat_id["contact_id"]
    assert event["data"]["email"] == "jo@example.be"


async def test_an_answer_for_a_visitor_who_left_nothing_waits_until_they_are_back(
    town: Town,
) -> None:
    visitor = await town.open_chat()
    reference = (await visitor.say("Wie maait de berm?", "berm-1"))["reference"]
    await sent_acknowledgements(town, 1)
    await visitor.close()

    await town.reply(reference, "De technische dienst, volgende week.")
    [row] = await town.wait_for_rows(1, OutboxRow, OUTBOX.c.state == "waiting")
    assert row["reason"] == "waiting for the citizen to open the chat again"
    assert town.smtp.received == []

    # The returning visitor sees the parked answer at once, without writing first.
    back = await town.open_chat(visitor.token)
    lines = back.welcome["transcript"]
    assert [line["from"] for line in lines] == ["visitor", "system", "staff"]
    assert lines[2]["text"] == "De technische dienst, volgende week."
    assert lines[2]["id"] == f"o-{row['id']}"

    # Writing again releases it; it is pushed with the same id (the widget shows it once).
    await back.say("Dank u.")
    pushed = await back.frame("message", staff)
    assert pushed["id"] == lines[2]["id"]
    await town.wait_for_rows(1, OutboxRow, OUTBOX.c.id == row["id"], OUTBOX.c.state == "sent")


async def test_within_the_grace_after_a_reload_the_answer_waits_in_the_transcript(
    start_town: StartTown,
) -> None:
    town = await start_town(**{"grace_seconds: 30 ": "grace_seconds: 30 "})
    visitor = await town.open_chat()
    reference = (await visitor.say("Is het zwembad open?"))["reference"]
    await sent_acknowledgements(town, 1)
    await visitor.close()
    await town.reply(reference, "Ja, tot 20 uur.")
    [row] = await town.wait_for_rows(
        1, OutboxRow, OUTBOX.c.purpose == "reply", OUTBOX.c.state == "sent"
    )
    assert row["channel"] == "webchat"
    [message] = await town.rows(Message, MESSAGES.c.id == row["message_id"])
    assert message["delivery_status"] == "sent"
    back = await town.open_chat(visitor.token)
    assert back.welcome["transcript"][-1]["text"] == "Ja, tot 20 uur."


# --- office hours and the offline form ----------------------------------------------------------


async def test_outside_office_hours_the_offline_form_leaves_a_message_and_an_address(
    town: Town,
) -> None:
    town.chat.clock = lambda: SUNDAY
    visitor = await town.open_chat()
    assert visitor.welcome["open"] is False
    assert visitor.welcome["next_open"] == "2026-11-23T08:30:00+01:00"

    await visitor.send(
        type="offline_message",
        client_id="off-1",
        text="Mijn paspoort is vervallen, wat moet ik doen?",
        email="jan@example.be",
        phone="0470 12 34 56",
    )
    received = await visitor.answer("off-1")
    assert received["type"] == "received"
    assert received["reference"] == "1750-000001"
    back = await town.open_chat(visitor.token)
    assert back.welcome["contact"] == {"email": True, "phone": True}
    assert back.welcome["transcript"][0]["text"] == "Mijn paspoort is vervallen, wat moet ik doen?"

    [ticket] = await town.rows(Ticket)
    identities = {
        (i["kind"], i["value"]): i["contact_id"] for i in await town.rows(ContactIdentity)
    }
    assert set(identities) == {
        ("webchat", visitor.id),
        ("email", "jan@example.be"),
        ("phone", "+32470123456"),
    }
    assert set(identities.values()) == {ticket["contact_id"]}
    [event] = await town.rows(ContactEvent)
    assert event["data"]["phone"] == "+32470123456"


@pytest.mark.parametrize(
    ("email", "phone", "code"),
    [
        (None, None, "need_address"),
        ("  ", None, "need_address"),
        ("jan@", None, "invalid_email"),
        (None, "123", "invalid_phone"),
        ("jan@example.be", "not a number", "invalid_phone"),
    ],
)
async def test_the_offline_form_needs_a_valid_address(
    town: Town, email: str | None, phone: str | None, code: str
) -> None:
    visitor = await town.open_chat()
    await visitor.send(
        type="offline_message", client_id="off-2", text="Hallo", email=email, phone=phone
    )
    error = await visitor.answer("off-2")
    assert (error["type"], error["code"]) == ("error", code)
    await visitor.send(type="contact", email=email, phone=phone)
    assert (await visitor.frame("error"))["code"] == code
    assert await town.rows(JournalEntry) == []
    assert await town.rows(ContactIdentity) == []


async def test_the_widget_is_told_when_the_chat_opens_and_closes(town: Town) -> None:
    moment = SUNDAY
    town.chat.clock = lambda: moment
    await town.chat.refresh()  # what the chat last told anyone: closed
    visitor = await town.open_chat()
    assert visitor.welcome["open"] is False
    moment = MONDAY
    assert await visitor.frame("hours") == {"type": "hours", "open": True, "next_open": None}
    moment = datetime(2026, 11, 23, 11, 5, tzinfo=UTC)  # 12:05, the lunch break
    assert await visitor.frame("hours") == {
        "type": "hours",
        "open": False,
        "next_open": "2026-11-23T13:30:00+01:00",
    }


# --- uploads and files --------------------------------------------------------------------------


async def test_a_photo_upload_becomes_part_of_the_conversation(town: Town) -> None:
    visitor = await town.open_chat()
    # The client calls it a JPEG; its bytes say PNG, and that is what is stored and served.
    response = await town.upload(
        visitor.token, PNG, filename="../../IMG 0042.JPG", client_id="up-1", text="Kijk maar."
    )
    assert response.status == 200, await response.text()
    assert response.headers["Access-Control-Allow-Origin"] == SITE
    received = await response.json()
    assert (received["type"], received["client_id"], received["id"]) == (
        "received",
        "up-1",
        "v-up-1",
    )
    assert received["reference"] == "1750-000001"
    [attachment] = await town.rows(AttachmentRow)
    assert (attachment["filename"], attachment["content_type"]) == ("IMG 0042.png", "image/png")
    # The answer names the stored copy; the open widget shows the line (once, by client_id).
    stored = {
        "url": f"/chat/files/{attachment['id']}",
        "name": "IMG 0042.png",
        "content_type": "image/png",
    }
    assert received["attachments"] == [stored]
    shown = await visitor.frame("message", lambda f: f["from"] == "visitor")
    assert (shown["client_id"], shown["text"], shown["attachments"]) == (
        "up-1",
        "Kijk maar.",
        [stored],
    )
    assert await town.client.app[RUNTIME].files.get(attachment["sha256"]) == PNG
    [message] = await town.rows(Message, MESSAGES.c.direction == "in")
    assert message["text"] == "Kijk maar."

    back = await town.open_chat(visitor.token)
    [line] = [line for line in back.welcome["transcript"] if line["from"] == "visitor"]
    [link] = line["attachments"]
    assert link == stored
    response = await town.client.get(
        link["url"], params={"visitor": visitor.token}, headers={"Origin": SITE}
    )
    assert response.status == 200
    assert await response.read() == PNG
    assert response.headers["Access-Control-Allow-Origin"] == SITE
    assert response.headers["Content-Disposition"] == (
        "inline; filename=\"IMG 0042.png\"; filename*=UTF-8''IMG%200042.png"
    )

    # Without the token, with a forged one or another visitor's: nothing.
    assert (await town.client.get(link["url"])).status == 403
    forged = f"{visitor.id}.AAAA"
    assert (await town.client.get(link["url"], params={"visitor": forged})).status == 403
    stranger = await town.open_chat()
    assert (await town.client.get(link["url"], params={"visitor": stranger.token})).status == 404
    missing = await town.client.get("/chat/files/999", params={"visitor": visitor.token})
    assert missing.status == 404


@pytest.mark.parametrize(
    ("data", "content_type", "status", "code"),
    [
        (b"<html><script>alert(1)</script></html>", "image/jpeg", 415, "unsupported_type"),
        (b"%PDF-1.7\n", "image/png", 415, "unsupported_type"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * (5 * 1024 * 1024), "image/jpeg", 413, "too_large"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * (8 * 1024 * 1024), "image/jpeg", 413, "too_large"),
        (b"", "image/jpeg", 400, "empty"),
    ],
)
async def test_an_upload_that_is_no_photo_or_too_big_is_refused_and_nothing_stored(
    town: Town, data: bytes, content_type: str, status: int, code: str
) -> None:
    visitor = await town.open_chat()
    response = await town.upload(visitor.token, data, content_type=content_type)
    assert response.status == status
    assert (await response.json())["error"] == code
    assert await town.rows(Message) == []
    assert await town.rows(JournalEntry) == []


async def test_an_upload_without_a_valid_token_or_from_another_site_is_refused(
    town: Town,
) -> None:
    visitor = await town.open_chat()
    for token, origin in [
        (None, SITE),
        ("forged.token", SITE),
        (visitor.token, "https://evil.example"),
    ]:
        response = await town.upload(token, PNG, origin=origin)
        assert response.status == 403, (token, origin)
    not_multipart = await town.client.post("/chat/upload", json={"visitor": visitor.token})
    assert not_multipart.status == 400
    assert await town.rows(Message) == []


async def test_too_many_uploads_are_rate_limited(start_town: StartTown) -> None:
    town = await start_town(**{"uploads_per_ten_minutes: 5 ": "uploads_per_ten_minutes: 1 "})
    visitor = await town.open_chat()
    assert (await town.upload(visitor.token, PNG)).status == 200
    refused = await town.upload(visitor.token, PNG)
    assert refused.status == 429
    assert (await refused.json())["error"] == "rate_limited"


async def test_a_browser_may_ask_before_uploading_from_the_town_s_site(town: Town) -> None:
    response = await town.client.options("/chat/upload", headers={"Origin": SITE})
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == SITE
    refused = await town.client.options("/chat/upload", headers={"Origin": "https://x.example"})
    assert refused.status == 403


# --- the script ---------------------------------------------------------------------------------


async def test_the_widget_script_is_served_with_caching_headers(town: Town, tmp_path: Path) -> None:
    town.chat.widget_path = tmp_path / "missing.js"
    missing = await town.client.get("/chat/widget.js")
    assert missing.status == 503
    assert "widget.js" in await missing.text()

    script = tmp_path / "widget.js"
    script.write_text("console.log('meldpunt');\n", encoding="utf-8")
    town.chat.widget_path = script
    response = await town.client.get("/chat/widget.js")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert "max-age" in response.headers["Cache-Control"]
    assert await response.text() == "console.log('meldpunt');\n"
    etag = response.headers["ETag"]
    cached = await town.client.get("/chat/widget.js", headers={"If-None-Match": etag})
    assert cached.status == 304


async def test_the_chat_can_be_switched_off(start_town: StartTown) -> None:
    town = await start_town(**{"webchat:\n    enabled: true": "webchat:\n    enabled: false"})
    assert (await town.client.get("/chat/widget.js")).status == 404
    ready = await (await town.client.get("/readyz")).json()
    assert ready["channels"]["webchat"] == "disabled"


async def test_a_message_refused_while_intake_is_down_goes_in_when_sent_again(
    town: Town,
) -> None:
    visitor = await town.open_chat()
    await visitor.say("Eerste bericht.")
    runtime = town.client.app[RUNTIME]
    await runtime.intake.stop()
    assert (await visitor.say("Tweede bericht.", "second"))["code"] == "unavailable"
    await runtime.intake.start()

    async def accepted() -> bool:
        return bool((await visitor.say("Tweede bericht.", "second"))["type"] == "received")

    await until(accepted, "the message accepted once intake is back")
    assert len(await town.rows(Message, MESSAGES.c.direction == "in")) == 2
