"""The kind of message chosen in the web chat, on the wire: the ``kind`` of a ``message``, an
``offline_message`` or an upload (docs/channels/webchat-protocol.md, "The kind of message").

The whole service with the sample configuration, a widget's WebSocket and the upload route. The
texts are chosen so that no routing rule would make them a compliment or a complaint by their
words: what the ticket becomes is the visitor's choice.
"""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

import aiohttp
import pytest

from store.models import JournalEntry, Message, Ticket, table_of
from tests.connectors.webchat.conftest import SITE, Town, Visitor

# About a cycle path: the sample rules send it to the technical service, as a report.
PRAISE = "De mannen die vanmorgen het fietspad in de Stationsstraat herstelden, waren vriendelijk."
THANKS = {
    "nl": "Bedankt voor uw compliment! We geven het door aan de collega's over wie het gaat.",
    "fr": "Merci pour votre compliment ! Nous le transmettons aux collègues concernés.",
}
MESSAGES = table_of(Message)
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


async def say(visitor: Visitor, text: str, **extra: Any) -> dict[str, Any]:
    """Send a ``message`` frame with ``extra`` fields; its ``received`` or ``error`` frame."""
    client_id = str(uuid.uuid4())
    await visitor.send(type="message", client_id=client_id, text=text, **extra)
    return await visitor.answer(client_id)


def system(frame: dict[str, Any]) -> bool:
    return bool(frame["from"] == "system")


async def upload(town: Town, token: str, **fields: str) -> aiohttp.ClientResponse:
    form = aiohttp.FormData()
    form.add_field("visitor", token)
    form.add_field("client_id", str(uuid.uuid4()))
    for name, value in fields.items():
        form.add_field(name, value)
    form.add_field("file", io.BytesIO(PNG), filename="plein.png", content_type="image/png")
    return await town.client.post("/chat/upload", data=form, headers={"Origin": SITE})


@pytest.mark.parametrize("lang", ["nl", "fr"])
async def test_a_chosen_compliment_is_thanked_in_the_chat_passed_on_and_closed(
    town: Town, lang: str
) -> None:
    visitor = await town.open_chat(lang=lang)
    received = await say(visitor, PRAISE, kind="compliment")
    assert received["type"] == "received"
    reference = received["reference"]
    assert reference == "1750-000001"

    # The compliment's own thanks, not the usual acknowledgement with a deadline.
    thanks = await visitor.frame("message", system)
    assert thanks["text"] == THANKS[lang]
    [ticket] = await town.rows(Ticket)
    assert (ticket["reference"], ticket["kind"], ticket["status"]) == (
        reference,
        "compliment",
        "closed",
    )
    assert ticket["department"] == "technical-service"
    assert "compliment" in ticket["tags"]
    # Passed to the department it is about, with the visitor's words.
    await town.wait_for_mail(1)
    [mail] = town.smtp.received
    assert mail.rcpt_tos == ["technische.dienst@wingene.example"]
    assert b"Stationsstraat" in mail.raw
    # The journal keeps the choice as it came in.
    [entry] = await town.rows(JournalEntry)
    assert json.loads(entry["payload"])["frame"]["kind"] == "compliment"


@pytest.mark.parametrize("extra", [{}, {"kind": None}], ids=["absent", "null"])
async def test_without_a_kind_the_same_words_are_an_ordinary_report(
    town: Town, extra: dict[str, Any]
) -> None:
    visitor = await town.open_chat()
    assert (await say(visitor, PRAISE, **extra))["reference"] == "1750-000001"
    ack = await visitor.frame("message", system)
    assert "1750-000001" in ack["text"]
    assert ack["text"] != THANKS["nl"]
    [ticket] = await town.rows(Ticket)
    assert (ticket["kind"], ticket["status"]) == ("report", "new")


async def test_a_chosen_complaint_goes_to_the_complaints_officer(town: Town) -> None:
    visitor = await town.open_chat()
    await say(visitor, "Het fietspad in de Stationsstraat ligt al maanden open.", kind="complaint")
    [ticket] = await town.rows(Ticket)
    assert (ticket["kind"], ticket["department"]) == ("complaint", "complaints")


@pytest.mark.parametrize(
    "kind",
    ["praise", "Compliment", "kind:compliment", "", 5, ["compliment"], {"value": "compliment"}],
)
async def test_an_unknown_kind_gets_bad_frame_and_nothing_is_stored(
    town: Town, kind: object
) -> None:
    visitor = await town.open_chat()
    await visitor.send(type="message", client_id="k-1", text=PRAISE, kind=kind)
    error = await visitor.answer("k-1")
    assert error == {
        "type": "error",
        "client_id": "k-1",
        "code": "bad_frame",
        "message": "Dit bericht kwam niet goed aan.",
    }
    assert await town.rows(JournalEntry) == []
    assert await town.rows(Message) == []
    assert await town.rows(Ticket) == []

    # The socket stays open and the chat goes on.
    assert (await say(visitor, PRAISE, kind="question"))["type"] == "received"
    [ticket] = await town.rows(Ticket)
    assert ticket["kind"] == "question"


async def test_a_kind_on_a_message_that_continues_the_open_ticket_is_ignored(
    town: Town,
) -> None:
    visitor = await town.open_chat()
    first = await say(visitor, "Het fietspad in de Stationsstraat heeft een diepe put.")
    await visitor.frame("message", system)
    later = await say(visitor, "Dank u voor de snelle hulp!", kind="compliment")
    assert later["type"] == "received"
    assert later["reference"] == first["reference"]

    [ticket] = await town.rows(Ticket)
    assert (ticket["kind"], ticket["status"]) == ("report", "new")
    assert len(await town.rows(Message, MESSAGES.c.direction == "in")) == 2


async def test_the_offline_form_carries_the_kind(town: Town) -> None:
    visitor = await town.open_chat()
    await visitor.send(
        type="offline_message",
        client_id="off-1",
        text="Zet een extra vuilnisbak bij de speeltuin in de Molenstraat.",
        email="jan@example.be",
        phone=None,
        kind="suggestion",
    )
    assert (await visitor.answer("off-1"))["type"] == "received"
    [ticket] = await town.rows(Ticket)
    assert (ticket["kind"], ticket["department"]) == ("suggestion", "environment")

    await visitor.send(
        type="offline_message",
        client_id="off-2",
        text="Nog een vraag.",
        email="jan@example.be",
        phone=None,
        kind="vraag",
    )
    assert (await visitor.answer("off-2"))["code"] == "bad_frame"
    assert len(await town.rows(Message, MESSAGES.c.direction == "in")) == 1
    assert len(await town.rows(Ticket)) == 1


async def test_an_upload_carries_the_kind_and_refuses_an_unknown_one(town: Town) -> None:
    visitor = await town.open_chat()
    refused = await upload(town, visitor.token, text="Kijk!", kind="lof")
    assert refused.status == 400
    assert (await refused.json())["error"] == "bad_frame"
    assert await town.rows(JournalEntry) == []
    assert await town.rows(Ticket) == []

    answer = await upload(
        town, visitor.token, text="Kijk hoe mooi het plein nu is!", kind="compliment"
    )
    assert answer.status == 200, await answer.text()
    [ticket] = await town.rows(Ticket)
    assert (ticket["kind"], ticket["status"]) == ("compliment", "closed")


async def test_an_empty_kind_field_in_an_upload_is_no_choice(town: Town) -> None:
    visitor = await town.open_chat()
    answer = await upload(town, visitor.token, text="Een put in het fietspad.", kind="")
    assert answer.status == 200, await answer.text()
    [ticket] = await town.rows(Ticket)
    assert ticket["kind"] == "report"
