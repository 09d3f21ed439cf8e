"""Answer buttons in the chat widget, in headless Chromium: the survey's "1 😞" to "5 😀".

Against the running service, a visitor clicks an answer and it reaches the ticket as their
score; against the scripted server (``FakeChat``), the buttons go once the visitor answers in
words, and speak the chat's language.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from playwright.async_api import Locator, expect

from ingest.followup import SURVEY_CHOICES
from meldpunt.app import RUNTIME
from meldpunt.config import load_config
from store.models import Ticket
from tests.conftest import free_port
from tests.connectors.webchat.browser.conftest import (
    ALWAYS_OPEN,
    FakeChat,
    Meldpunt,
    NewVisitor,
    TownSite,
    Visitor,
    chat_config,
)
from tests.service import until

STAFF: dict[str, Any] = {
    "type": "message",
    "id": "o-7",
    "from": "system",
    "text": "Hoe tevreden bent u over onze hulp bij 1750-000042? Antwoord met een cijfer.",
    "at": "2026-11-16T10:01:00Z",
    "attachments": [],
    "client_id": None,
    "choices": list(SURVEY_CHOICES),
}


@pytest.fixture
async def meldpunt(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, town_site: TownSite
) -> AsyncIterator[Meldpunt]:
    """meldpunt, staffed around the clock, asking the survey as soon as a ticket is resolved;
    the test runs the timers itself."""
    port = free_port()
    config = chat_config(
        tmp_path, database_url, monkeypatch,
        port=port, site_origin=town_site.origin, office_hours=ALWAYS_OPEN, webchat={},
    )  # fmt: skip
    data = yaml.safe_load(config.config_file.read_text(encoding="utf-8"))
    data["follow_up"]["interval_seconds"] = 3600
    data["follow_up"]["survey"]["delay_hours"] = 0
    config.config_file.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    service = Meldpunt(load_config(config.config_file), port)
    await service.start()
    town_site.meldpunt_base = service.base
    try:
        yield service
    finally:
        await service.stop()


async def resolve(meldpunt: Meldpunt, reference: str, answer: str) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{meldpunt.base}/api/v1/tickets/{reference}/status",
            json={"status": "resolved", "answer": answer},
            headers={"Authorization": f"Bearer {await meldpunt.staff_token()}"},
        ) as response,
    ):
        assert response.status == 200, await response.text()


def answers(visitor: Visitor, name: str = "Kies een antwoord") -> Locator:
    return visitor.dialog.get_by_role("group", name=name)


async def test_a_visitor_clicks_an_answer_and_it_is_recorded_as_their_score(
    meldpunt: Meldpunt, visitor: Visitor
) -> None:
    await visitor.visit()
    await visitor.open()
    await visitor.write("De straatlamp in de Kerkstraat brandt niet.")
    [ticket] = await meldpunt.wait_for_rows(1, Ticket)
    reference = ticket["reference"]
    await resolve(meldpunt, reference, "De lamp is vervangen.")
    await expect(visitor.lines().filter(has_text="De lamp is vervangen.")).to_have_count(1)
    # Lines without answers offer no buttons.
    await expect(answers(visitor)).to_have_count(0)

    assert meldpunt.runner is not None
    assert await meldpunt.runner.app[RUNTIME].timers.run_once() == 1
    survey = visitor.lines().filter(has_text="Hoe tevreden bent u over onze hulp")
    await expect(survey).to_have_count(1)
    # Real buttons named by their labels, grouped under a name in the chat's language, under
    # the survey's own line.
    buttons = survey.get_by_role("group", name="Kies een antwoord").get_by_role("button")
    await expect(buttons).to_have_text(list(SURVEY_CHOICES))

    # Reached with the keyboard: the first stop after the conversation log.
    await visitor.log.focus()
    await visitor.page.keyboard.press("Tab")
    assert await visitor.focused() == "button: 1 😞"

    await visitor.dialog.get_by_role("button", name="5 😀", exact=True).click()
    mine = visitor.lines("visitor").last
    await expect(mine).to_contain_text("5 😀")
    await expect(mine).to_have_attribute("data-state", "sent")
    await expect(answers(visitor)).to_have_count(0)
    # The pressed button is gone: the keyboard goes on in the message box.
    await expect(visitor.message_box).to_be_focused()

    async def recorded() -> bool:
        [row] = await meldpunt.rows(Ticket)
        return bool(row["satisfaction"] == 5)

    await until(recorded, "the score 5 on the ticket")
    [row] = await meldpunt.rows(Ticket)
    assert (row["survey_state"], row["satisfaction"], row["status"]) == ("answered", 5, "resolved")
    await expect(visitor.lines().filter(has_text="Bedankt voor uw antwoord")).to_have_count(1)
    await expect(answers(visitor)).to_have_count(0)


async def open_chat(visitor: Visitor, fake: FakeChat, **query: str) -> None:
    await visitor.visit(**query)
    await visitor.open()
    await fake.wait_for(1, "hello")


async def test_the_buttons_go_once_the_visitor_answers_in_words(
    fake_chat: FakeChat, visitor: Visitor
) -> None:
    await open_chat(visitor, fake_chat)
    await fake_chat.push(STAFF)
    await expect(answers(visitor).get_by_role("button")).to_have_count(5)

    await visitor.write("Heel tevreden, dank u!")
    [message] = await fake_chat.wait_for(1, "message")
    assert message["text"] == "Heel tevreden, dank u!"
    await expect(answers(visitor)).to_have_count(0)

    # Asked again: a click sends exactly the label, as an ordinary message.
    await fake_chat.push({**STAFF, "id": "o-8"})
    await answers(visitor).get_by_role("button", name="3 😐").click()
    _, clicked = await fake_chat.wait_for(2, "message")
    assert clicked["type"] == "message"
    assert clicked["text"] == "3 😐"
    assert clicked["client_id"] != message["client_id"]
    await expect(answers(visitor)).to_have_count(0)


async def test_the_buttons_speak_french_and_stay_under_the_newest_line_only(
    fake_chat: FakeChat, new_visitor: NewVisitor
) -> None:
    visitor = await new_visitor()
    visitor.strings = {
        "launcher": "Chattez avec nous",
        "dialog": "Chattez avec nous",
        "message": "Votre message",
    }
    await open_chat(visitor, fake_chat, lang="fr")
    await fake_chat.push(STAFF)
    group = answers(visitor, "Choisissez une réponse")
    await expect(group.get_by_role("button")).to_have_count(5)
    # A line that came after the question: the buttons under the old line go with it.
    await fake_chat.push({**STAFF, "id": "o-9", "text": "Autre chose ?", "choices": []})
    await expect(group).to_have_count(0)
