"""Answers offered as buttons in the web chat, on the wire: the pushed line carries ``choices``,
and the label the widget sends back when one is clicked is read as the visitor's answer.

The whole service, a widget's WebSocket, staff acting through the REST API. The survey is asked
at once after the ticket is resolved (``delay_hours: 0``) and the test runs the timers itself.
"""

from __future__ import annotations

from typing import Any

import pytest

from ingest.followup import SURVEY_CHOICES
from meldpunt.app import RUNTIME
from store.models import Ticket
from tests.connectors.webchat.conftest import StartTown, Town, Visitor

SURVEY_AT_ONCE = {
    "interval_seconds: 30 ": "interval_seconds: 3600 ",
    "delay_hours: 24 ": "delay_hours: 0 ",
}


@pytest.fixture
async def town(start_town: StartTown) -> Town:
    return await start_town(**SURVEY_AT_ONCE)


async def resolve(town: Town, reference: str, answer: str) -> None:
    response = await town.client.post(
        f"/api/v1/tickets/{reference}/status",
        json={"status": "resolved", "answer": answer},
        headers={"Authorization": f"Bearer {await town.staff_token()}"},
    )
    assert response.status == 200, await response.text()


async def ticket(town: Town, reference: str) -> dict[str, Any]:
    response = await town.client.get(
        f"/api/v1/tickets/{reference}",
        headers={"Authorization": f"Bearer {await town.staff_token()}"},
    )
    assert response.status == 200, await response.text()
    found: dict[str, Any] = await response.json()
    return found


def says(text: str) -> Any:
    return lambda frame: text in frame["text"]


async def surveyed(town: Town, visitor: Visitor) -> tuple[str, dict[str, Any]]:
    """A chat answered and resolved, the survey just pushed: the reference and the frame."""
    received = await visitor.say("De straatlamp in de Kerkstraat brandt niet.")
    reference = received["reference"]
    assert reference is not None
    ack = await visitor.frame("message", says(reference))
    assert ack["choices"] == []
    await resolve(town, reference, "De lamp is vervangen.")
    resolved = await visitor.frame("message", says("De lamp is vervangen."))
    assert resolved["choices"] == []
    assert await town.client.app[RUNTIME].timers.run_once() == 1
    return reference, await visitor.frame("message", lambda f: bool(f["choices"]))


async def test_the_survey_line_carries_its_answers_and_a_clicked_label_is_the_score(
    town: Town,
) -> None:
    visitor = await town.open_chat()
    reference, survey = await surveyed(town, visitor)
    assert survey["choices"] == list(SURVEY_CHOICES)
    assert survey["from"] == "system"
    assert reference in survey["text"]
    # The text says how to answer in words too, for a widget (or a visitor) without buttons.
    assert "Antwoord met een cijfer van 1 (heel slecht) tot 5 (heel goed)." in survey["text"]

    # A click sends the label as an ordinary message.
    answer = await visitor.say("5 😀")
    assert answer["type"] == "received"
    assert answer["reference"] == reference
    found = await ticket(town, reference)
    assert (found["survey"], found["satisfaction"]) == ("answered", 5)
    assert found["satisfaction_comment"] is None
    assert found["status"] == "resolved"
    assert len(await town.rows(Ticket)) == 1
    thanks = await visitor.frame("message", says("Bedankt"))
    assert thanks["choices"] == []
    await visitor.close()


async def test_an_unclear_answer_is_asked_again_with_the_buttons(town: Town) -> None:
    visitor = await town.open_chat(lang="fr")
    reference, _ = await surveyed(town, visitor)

    await visitor.say("euh")
    again = await visitor.frame("message", lambda f: bool(f["choices"]))
    assert again["choices"] == list(SURVEY_CHOICES)
    assert (await ticket(town, reference))["survey"] == "unclear"

    await visitor.say("2 🙁")
    found = await ticket(town, reference)
    assert (found["survey"], found["satisfaction"]) == ("answered", 2)
    await visitor.close()


async def test_lines_read_back_on_return_offer_no_buttons(town: Town) -> None:
    visitor = await town.open_chat()
    await surveyed(town, visitor)
    await visitor.close()

    # Back later: the survey is in the transcript, answered by typing from here on.
    back = await town.open_chat(visitor.token)
    lines = back.welcome["transcript"]
    assert "hoe tevreden" in lines[-1]["text"].lower()
    assert all(line["choices"] == [] for line in lines)
    await back.close()
