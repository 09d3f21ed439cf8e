"""Choosing the kind of message in the chat widget, in headless Chromium.

Against the running service, a visitor picks "Compliment" and the ticket is one (thanked and
closed); against the scripted server (``FakeChat``), the choice is asked only before the first
message of a conversation, goes with that message alone, and comes back when it is refused.
"""

from __future__ import annotations

from typing import Any

from playwright.async_api import Locator, expect

from store.models import Ticket
from tests.connectors.webchat.browser.conftest import FakeChat, Meldpunt, NewVisitor, Visitor

OPTIONS_NL = [
    "Maak een keuze (niet verplicht)",
    "Melding (iets is stuk, vuil of gevaarlijk)",
    "Vraag",
    "Suggestie of idee",
    "Klacht",
    "Compliment",
]


def kind_choice(visitor: Visitor, name: str = "Waarover gaat het?") -> Locator:
    return visitor.dialog.get_by_role("combobox", name=name)


async def test_a_visitor_picks_compliment_and_the_ticket_is_a_compliment(
    meldpunt: Meldpunt, visitor: Visitor
) -> None:
    await visitor.visit()
    await visitor.open()
    choice = kind_choice(visitor)
    await expect(choice).to_be_visible()
    await expect(choice).to_have_value("")
    await expect(choice.locator("option")).to_have_text(OPTIONS_NL)

    # On the Tab path, just before the photo button and the message box.
    await expect(visitor.dialog.get_by_role("button", name="Foto toevoegen")).to_be_enabled()
    await visitor.message_box.focus()
    await visitor.page.keyboard.press("Shift+Tab")
    await visitor.page.keyboard.press("Shift+Tab")
    assert await visitor.focused() == "select: Waarover gaat het?"

    await choice.select_option(label="Compliment")
    await visitor.write("Het fietspad in de Stationsstraat is mooi hersteld, proficiat!")
    await expect(visitor.lines("visitor").last).to_have_attribute("data-state", "sent")
    # Asked once: the conversation goes on without it.
    await expect(choice).to_be_hidden()

    [ticket] = await meldpunt.wait_for_rows(1, Ticket)
    assert (ticket["kind"], ticket["status"]) == ("compliment", "closed")
    await expect(
        visitor.lines("system").filter(has_text="Bedankt voor uw compliment!")
    ).to_have_count(1)


async def open_chat(visitor: Visitor, fake: FakeChat, **query: str) -> None:
    await visitor.visit(**query)
    await visitor.open()
    await fake.wait_for(1, "hello")


async def test_no_choice_sends_no_kind_and_the_choice_goes_after_the_first_message(
    fake_chat: FakeChat, visitor: Visitor
) -> None:
    await open_chat(visitor, fake_chat)
    await expect(kind_choice(visitor)).to_be_visible()
    await visitor.write("Wanneer is het recyclagepark open?")
    [first] = await fake_chat.wait_for(1, "message")
    assert "kind" not in first
    await expect(kind_choice(visitor)).to_be_hidden()
    await visitor.write("En op zaterdag?")
    _, second = await fake_chat.wait_for(2, "message")
    assert "kind" not in second


async def test_a_visitor_with_an_open_ticket_is_not_asked(
    fake_chat: FakeChat, new_visitor: NewVisitor
) -> None:
    fake_chat.welcome["reference"] = "1750-000042"
    visitor = await new_visitor()
    await open_chat(visitor, fake_chat)
    await expect(visitor.dialog).to_contain_text("Uw referentie: 1750-000042")
    await expect(kind_choice(visitor)).to_be_hidden()


async def test_a_refused_first_message_gives_the_choice_back_in_french(
    fake_chat: FakeChat, new_visitor: NewVisitor
) -> None:
    def refuse_first(frame: dict[str, Any]) -> list[dict[str, Any]]:
        if frame["type"] == "message" and len(fake_chat.sent("message")) == 1:
            return [{"type": "error", "client_id": frame["client_id"], "code": "bad_frame"}]
        return fake_chat.as_meldpunt(frame)

    fake_chat.respond = refuse_first
    visitor = await new_visitor()
    visitor.strings = {
        "launcher": "Chattez avec nous",
        "dialog": "Chattez avec nous",
        "message": "Votre message",
    }
    await open_chat(visitor, fake_chat, lang="fr")
    choice = kind_choice(visitor, "De quoi s'agit-il ?")
    await choice.select_option(label="Plainte")
    await visitor.write("Personne ne répond au téléphone.")
    [refused] = await fake_chat.wait_for(1, "message")
    assert refused["kind"] == "complaint"
    await expect(visitor.lines("visitor").last).to_have_attribute("data-state", "failed")
    await expect(choice).to_have_value("complaint")

    await visitor.write("Personne ne répond au téléphone.")
    _, sent = await fake_chat.wait_for(2, "message")
    assert sent["kind"] == "complaint" and sent["client_id"] != refused["client_id"]
    await expect(choice).to_be_hidden()
