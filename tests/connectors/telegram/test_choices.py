"""Answers offered as buttons on Telegram: the survey's reply keyboard, and a tap read as a score.

The whole service against the fake Bot API. The survey is asked at once after the ticket is
resolved (``delay_hours: 0``) and the test runs the timers itself; a tap on a reply keyboard
button reaches the bot as an ordinary message with the button's text, so that is what is posted.
"""

from __future__ import annotations

from typing import Any

from ingest.followup import SURVEY_CHOICES
from ingest.model import Channel, OutboundAttachment, OutboundMessage
from meldpunt.app import RUNTIME
from store.models import Ticket
from tests.connectors.telegram.conftest import (
    CITIZEN,
    StartTown,
    Town,
    fixture,
    text_update,
)

FIRST = "1750-000001"
# The test runs the timers; the survey is due as soon as the ticket is resolved.
SURVEY_AT_ONCE = {
    "interval_seconds: 30 ": "interval_seconds: 3600 ",
    "delay_hours: 24 ": "delay_hours: 0 ",
}
KEYBOARD = {
    "keyboard": [[{"text": label} for label in SURVEY_CHOICES]],
    "one_time_keyboard": True,
    "resize_keyboard": True,
}
NO_KEYBOARD = {"remove_keyboard": True}


async def resolve(town: Town, reference: str, answer: str) -> None:
    response = await town.client.post(
        f"/api/v1/tickets/{reference}/status",
        json={"status": "resolved", "answer": answer},
        headers={"Authorization": f"Bearer {await town.staff_token()}"},
    )
    assert response.status == 200, await response.text()


async def write(town: Town, number: int, text: str) -> None:
    """The citizen sends (or taps) ``text``: message ``number`` of the chat."""
    # Message ids below the fake's own (101 on): a chat numbers both sides' messages alike.
    update = text_update(fixture("text")["update_id"] + number, 60 + number, text)
    assert (await town.post(update)).status == 200


async def surveyed(town: Town) -> Any:
    """A report acknowledged, answered and resolved; the survey just sent. Its sendMessage."""
    assert (await town.post(fixture("text"))).status == 200
    [ack] = await town.wait_for_calls("sendMessage", 1)
    assert FIRST in ack.params["text"]
    await resolve(town, FIRST, "De lamp is vervangen.")
    await town.wait_for_calls("sendMessage", 2)
    assert await town.client.app[RUNTIME].timers.run_once() == 1
    return (await town.wait_for_calls("sendMessage", 3))[2]


async def test_the_survey_offers_a_keyboard_and_a_tap_is_recorded_as_the_score(
    start_town: StartTown,
) -> None:
    town = await start_town(**SURVEY_AT_ONCE)
    survey = await surveyed(town)
    assert survey.params["chat_id"] == str(CITIZEN)
    assert FIRST in survey.params["text"]
    # One row of five; a tap sends the label as the citizen's own message, then hides them.
    assert survey.params["reply_markup"] == KEYBOARD
    # Messages without answers take a keyboard away (none was showing for these two).
    [ack, resolved] = town.telegram.sent("sendMessage")[:2]
    assert ack.params["reply_markup"] == resolved.params["reply_markup"] == NO_KEYBOARD

    await write(town, 1, "4 🙂")
    ticket = await town.api(f"/tickets/{FIRST}")
    assert (ticket["survey"], ticket["satisfaction"]) == ("answered", 4)
    # The label is the score and nothing more: no comment for staff.
    assert ticket["satisfaction_comment"] is None
    assert ticket["status"] == "resolved"
    assert len(await town.rows(Ticket)) == 1
    # The thanks takes the keyboard away, so a late tap cannot reopen the matter.
    thanks = (await town.wait_for_calls("sendMessage", 4))[3]
    assert thanks.params["text"].startswith("Bedankt")
    assert thanks.params["reply_markup"] == NO_KEYBOARD


async def test_after_an_unclear_answer_the_keyboard_comes_again(start_town: StartTown) -> None:
    town = await start_town(**SURVEY_AT_ONCE)
    await surveyed(town)

    await write(town, 1, "tja")
    again = (await town.wait_for_calls("sendMessage", 4))[3]
    assert again.params["reply_markup"] == KEYBOARD
    assert (await town.api(f"/tickets/{FIRST}"))["survey"] == "unclear"

    await write(town, 2, "2 🙁")
    ticket = await town.api(f"/tickets/{FIRST}")
    assert (ticket["survey"], ticket["satisfaction"]) == ("answered", 2)


async def test_the_keyboard_goes_on_the_last_part_of_a_long_message_or_its_file(
    town: Town,
) -> None:
    connector = town.client.app[RUNTIME].connectors[Channel.TELEGRAM]
    # Two paragraphs of 3,000 characters: more than Telegram's 4,096 in one message.
    long_text = "a" * 3000 + "\n\n" + "b" * 3000
    await connector.send(
        OutboundMessage(
            outbox_id=1,
            channel=Channel.TELEGRAM,
            recipient=str(CITIZEN),
            text=long_text,
            choices=SURVEY_CHOICES,
        )
    )
    first, last = town.telegram.sent("sendMessage")
    assert (first.params["text"][0], last.params["text"][0]) == ("a", "b")
    assert "reply_markup" not in first.params
    assert last.params["reply_markup"] == KEYBOARD

    # With a file after the text, the file is the last message, and carries the keyboard.
    sha = await town.client.app[RUNTIME].files.put(b"%PDF-1.7\n" + b"x" * 64)
    await connector.send(
        OutboundMessage(
            outbox_id=2,
            channel=Channel.TELEGRAM,
            recipient=str(CITIZEN),
            text="Bekijk het plan.",
            attachments=(OutboundAttachment("plan.pdf", "application/pdf", 73, sha),),
            choices=("Ja", "Nee"),
        )
    )
    text, document = town.telegram.sent()[2:]
    assert (text.method, document.method) == ("sendMessage", "sendDocument")
    assert "reply_markup" not in text.params
    assert document.params["reply_markup"] == {
        "keyboard": [[{"text": "Ja"}, {"text": "Nee"}]],
        "one_time_keyboard": True,
        "resize_keyboard": True,
    }
