"""The ticket list in headless Chromium: views, filters and search narrow it, and new work
appears while it is open, without a reload and without taking the keyboard's place.

Locators go by role and accessible name, as a screen reader user finds things. A screenshot of
the list with several tickets is saved as var/test-artefacts/inbox/ticket-list.png on every run.
"""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Page, expect
from yarl import URL

from ingest.model import Channel, Kind
from tests.browser import NewContext
from tests.inbox.web.browser.conftest import Inbox
from tests.inbox.web.browser.test_signin import problems
from tests.inbox.web.conftest import PASSWORD

# The page asks for changes every four seconds; a new ticket shows within two rounds.
LIVE_TIMEOUT = 15_000


async def sign_in(page: Page, inbox: Inbox, email: str) -> None:
    await page.goto(inbox.url("/login"))
    await page.get_by_label("E-mailadres").fill(email)
    await page.get_by_label("Wachtwoord").fill(PASSWORD)
    await page.get_by_role("button", name="Aanmelden").click()
    await expect(page.get_by_role("heading", name="Tickets")).to_be_visible()


async def several_tickets(inbox: Inbox) -> dict[str, str]:
    return {
        "lamp": await inbox.submit(
            "De straatlamp voor huisnummer 12 brandt al een week niet.",
            "Straatlamp kapot in de Kerkstraat",
            name="Jan Maes",
            email="jan.maes@example.be",
        ),
        "dump": await inbox.submit(
            "Er ligt een hoop afval naast de glasbol aan de sporthal.",
            "Sluikstort aan de glasbol",
            name="Mie Janssens",
            email="mie@example.be",
            channel=Channel.WEBCHAT,
        ),
        "card": await inbox.submit(
            "Hoe lang moet ik wachten op mijn nieuwe identiteitskaart? Ik ga op reis naar "
            "de école in Frankrijk.",
            "Vraag over identiteitskaart",
            name="Karim El Amrani",
            email="karim@example.be",
            kind=Kind.QUESTION,
        ),
        "complaint": await inbox.submit(
            "Ik heb drie keer gebeld en niemand belt terug.",
            "Niemand belt terug",
            name="Lotte De Smet",
            email="lotte@example.be",
            kind=Kind.COMPLAINT,
        ),
    }


async def test_views_filters_and_search_narrow_the_list(
    inbox: Inbox, new_context: NewContext, artefacts: Path
) -> None:
    await inbox.add_user("els@wingene.example", "operator", (), name="Els Claes")
    made = await several_tickets(inbox)
    page = await (await new_context(viewport={"width": 1280, "height": 800})).new_page()
    errors = problems(page)
    await sign_in(page, inbox, "els@wingene.example")

    rows = page.locator("table.tickets tbody tr")
    await expect(rows).to_have_count(4)
    views = page.get_by_role("navigation", name="Weergaven")
    await expect(views.get_by_role("link", name="Alle tickets 4 open")).to_have_attribute(
        "aria-current", "page"
    )
    await page.screenshot(path=artefacts / "ticket-list.png", full_page=True)

    # A word only in the citizen's message, typed without its accent.
    await page.get_by_label("Zoeken", exact=True).fill("ecole")
    await page.get_by_label("Zoeken", exact=True).press("Enter")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text(made["card"])
    assert URL(page.url).query["q"] == "ecole"

    await page.get_by_label("Zoeken", exact=True).fill('"straat OR *')
    await page.get_by_role("button", name="Toon").click()
    await expect(page.get_by_text("Geen tickets.")).to_be_visible()

    await page.get_by_label("Zoeken", exact=True).fill("")
    await page.get_by_label("Kanaal").select_option(label="webchat")
    await page.get_by_role("button", name="Toon").click()
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text(made["dump"])

    await page.get_by_label("Kanaal").select_option(label="alle")
    await page.get_by_label("Volgorde").select_option(label="oudste eerst")
    await page.get_by_role("button", name="Toon").click()
    await expect(rows).to_have_count(4)
    await expect(rows.first).to_contain_text(made["lamp"])

    await views.get_by_role("link", name="Niet toegewezen").click()
    await expect(rows).to_have_count(4)
    await expect(views.get_by_role("link", name="Niet toegewezen")).to_have_attribute(
        "aria-current", "page"
    )
    await views.get_by_role("link", name="Mijn tickets").click()
    await expect(page.get_by_text("Geen tickets.")).to_be_visible()
    assert errors == []
    assert (artefacts / "ticket-list.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


async def test_a_new_ticket_appears_while_the_list_is_open(inbox: Inbox, page: Page) -> None:
    await inbox.add_user("els@wingene.example", "operator", (), name="Els Claes")
    await inbox.submit("De straatlamp brandt niet.", "Straatlamp kapot", email="jan@example.be")
    errors = problems(page)
    await sign_in(page, inbox, "els@wingene.example")
    rows = page.locator("table.tickets tbody tr")
    await expect(rows).to_have_count(1)
    count = page.locator('.views-count[data-view="all"]')
    await expect(count).to_have_text("1")
    # The page stays the same page: a reload would forget this, and the half-typed search.
    await page.evaluate("window.keptAcrossUpdates = true")
    search = page.get_by_label("Zoeken", exact=True)
    await search.click()
    await page.keyboard.type("half getyp")

    reference = await inbox.submit(
        "Er ligt glas op het fietspad.", "Glas op het fietspad", email="mie@example.be"
    )

    await expect(page.get_by_role("link", name=reference)).to_be_visible(timeout=LIVE_TIMEOUT)
    await expect(rows).to_have_count(2)
    await expect(count).to_have_text("2")
    await expect(page.locator("#views-live")).to_have_text("1 nieuw ticket in de lijst.")
    await expect(page.locator("#views-live")).to_have_attribute("aria-live", "polite")
    assert await page.evaluate("window.keptAcrossUpdates") is True
    await expect(search).to_be_focused()
    await expect(search).to_have_value("half getyp")
    # The newest first, as the list is sorted.
    await expect(rows.first).to_contain_text("Glas op het fietspad")
    assert errors == []
