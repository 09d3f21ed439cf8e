"""Signing in to the staff web inbox in headless Chromium, and what staff see.

Locators go by role and accessible name, as a screen reader user finds things. The last test
saves screenshots of the sign-in page and of a ticket list under var/test-artefacts/inbox/ on
every run, so anyone can see what staff see.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from playwright.async_api import ConsoleMessage, Page, Response, expect
from sqlmodel import col
from yarl import URL

from ingest.model import Channel, Kind
from store.models import Ticket, utcnow
from tests.browser import NewContext
from tests.inbox.web.browser.conftest import Inbox
from tests.inbox.web.conftest import PASSWORD

LOCKED = re.compile(r"^Te veel mislukte pogingen\. Probeer opnieuw na \d\d:\d\d\.$")


def problems(page: Page) -> list[str]:
    """What goes wrong on the page from now on: errors it logs (a script or stylesheet the
    Content-Security-Policy blocks shows up there) and requests that fail."""
    found: list[str] = []

    def logged(message: ConsoleMessage) -> None:
        # A failed request is also logged, without its address; it is kept below, with it.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            found.append(message.text)

    def answered(response: Response) -> None:
        # The browser asks for /favicon.ico by itself; the inbox has none.
        if response.status >= 400 and URL(response.url).path != "/favicon.ico":
            found.append(f"{response.status} {response.url}")

    page.on("console", logged)
    page.on("response", answered)
    return found


async def sign_in_with_the_keyboard(page: Page, email: str, password: str = PASSWORD) -> None:
    """Type into the sign-in form as a keyboard user: the address has focus on arrival."""
    await expect(page.get_by_label("E-mailadres")).to_be_focused()
    await page.keyboard.type(email)
    await page.keyboard.press("Tab")
    await expect(page.get_by_label("Wachtwoord")).to_be_focused()
    await page.keyboard.type(password)
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("button", name="Aanmelden")).to_be_focused()
    await page.keyboard.press("Enter")


async def test_staff_sign_in_with_the_keyboard_switch_to_french_and_sign_out(
    inbox: Inbox, page: Page
) -> None:
    await inbox.add_user("els@wingene.example", "agent", ("environment",), name="Els Claes")
    reference = await inbox.submit(
        "De vuilniszakken in de Kerkstraat zijn niet opgehaald.", "Afval niet opgehaald"
    )
    errors = problems(page)

    await page.goto(inbox.url("/"))
    await expect(page.get_by_role("heading", name="Aanmelden")).to_be_visible()
    assert URL(page.url).path == "/login"
    await sign_in_with_the_keyboard(page, "els@wingene.example")

    await expect(page.get_by_role("heading", name="Tickets")).to_be_visible()
    assert URL(page.url).path_qs == "/"
    await expect(page.get_by_text("Els Claes")).to_be_visible()
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=reference))
    await expect(row).to_contain_text("Afval niet opgehaald")
    await expect(row).to_contain_text("Milieu en afval")
    await expect(row).to_contain_text("An Peeters")

    await page.get_by_role("navigation", name="Taal").get_by_role("link", name="FR").click()
    await expect(page.locator("html")).to_have_attribute("lang", "fr")
    await expect(page.get_by_role("columnheader", name="Service")).to_be_visible()
    await expect(page.get_by_role("link", name=reference)).to_be_visible()
    french_sign_out = page.get_by_role("button", name="Se déconnecter")
    await expect(french_sign_out).to_be_visible()

    await french_sign_out.click()
    await expect(page.get_by_role("status")).to_have_text("Vous êtes déconnecté.")
    await expect(page.get_by_role("heading", name="Se connecter")).to_be_visible()
    assert not [c for c in await page.context.cookies() if c["name"] == "meldpunt_session"]

    # Gone for good: the list sends back to signing in, still in French.
    await page.goto(inbox.url("/"))
    await expect(page.get_by_role("heading", name="Se connecter")).to_be_visible()
    await expect(page.get_by_role("link", name=reference)).to_have_count(0)
    assert errors == []


async def test_five_wrong_passwords_show_the_lock_out(inbox: Inbox, page: Page) -> None:
    await inbox.add_user("els@wingene.example", name="Els Claes")
    await page.goto(inbox.url("/login"))
    email = page.get_by_label("E-mailadres")
    password = page.get_by_label("Wachtwoord")
    alert = page.get_by_role("alert")
    await email.fill("els@wingene.example")
    for attempt in range(1, 6):
        await password.fill(f"raden-maar-{attempt}")
        async with page.expect_navigation():
            await password.press("Enter")
        if attempt < 5:
            await expect(alert).to_have_text("Het e-mailadres of het wachtwoord klopt niet.")
        # The address stays filled in, and the error is read out with it.
        await expect(email).to_have_value("els@wingene.example")
        await expect(email).to_have_attribute("aria-describedby", "fout")
    await expect(alert).to_have_text(LOCKED)

    await password.fill(PASSWORD)
    async with page.expect_navigation():
        await password.press("Enter")
    await expect(alert).to_have_text(LOCKED)
    await expect(page.get_by_role("heading", name="Aanmelden")).to_be_visible()


async def test_what_staff_see_is_saved_as_screenshots(
    inbox: Inbox, new_context: NewContext, artefacts: Path
) -> None:
    await inbox.add_user("els@wingene.example", "operator", (), name="Els Claes")
    await inbox.submit(
        "De straatlamp voor huisnummer 12 brandt al een week niet.",
        "Straatlamp kapot in de Kerkstraat",
        name="Jan Maes",
        email="jan.maes@example.be",
    )
    late = await inbox.submit(
        "Er ligt een hoop afval naast de glasbol aan de sporthal.",
        "Sluikstort aan de glasbol",
        name="Mie Janssens",
        email="mie@example.be",
        channel=Channel.WEBCHAT,
    )
    await inbox.submit(
        "Hoe lang moet ik wachten op mijn nieuwe identiteitskaart?",
        "Vraag over identiteitskaart",
        name="Karim El Amrani",
        email="karim@example.be",
        kind=Kind.QUESTION,
    )
    await inbox.submit(
        "Ik heb drie keer gebeld en niemand belt terug.",
        "Niemand belt terug",
        name="Lotte De Smet",
        email="lotte@example.be",
        kind=Kind.COMPLAINT,
    )
    async with inbox.db.session() as session:
        await session.execute(
            sa.update(Ticket)
            .where(col(Ticket.reference) == late)
            .values(first_answer_due=utcnow() - timedelta(hours=3))
        )

    page = await (await new_context(viewport={"width": 1280, "height": 720})).new_page()
    errors = problems(page)
    await page.goto(inbox.url("/login"))
    await expect(page.get_by_role("heading", name="Aanmelden")).to_be_visible()
    # The stylesheet loaded (the page's own policy allows it): the header is the town's blue.
    await expect(page.locator("header")).to_have_css("background-color", "rgb(29, 79, 145)")
    await page.screenshot(path=artefacts / "login.png", full_page=True)

    await sign_in_with_the_keyboard(page, "els@wingene.example")
    rows = page.locator("table.tickets tbody tr")
    await expect(rows).to_have_count(4)
    overdue = rows.filter(has=page.get_by_role("link", name=late))
    await expect(overdue).to_have_class("overdue")
    await expect(overdue).to_contain_text("te laat")
    await expect(rows.filter(has_text="te laat")).to_have_count(1)
    # The list's screenshot, ticket-list.png, is taken by test_views.py.
    assert errors == []

    assert (artefacts / "login.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
