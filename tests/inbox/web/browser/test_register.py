"""Registering a ticket by hand in headless Chromium: a community warden on a tablet reports what
they saw in the street, with the tablet's location and a photo.

The form's rules are tested over HTTP on both backends (tests/inbox/web/test_register.py); here
the browser's side: the "use my location" button (register.js, with the browser's geolocation),
a photo chosen in the file field, and the ticket page that follows.
"""

from __future__ import annotations

import re
from pathlib import Path

from playwright.async_api import expect
from yarl import URL

from tests.browser import NewContext
from tests.inbox.web.browser.conftest import Inbox
from tests.inbox.web.browser.test_signin import problems, sign_in_with_the_keyboard
from tests.inbox.web.test_register import png

# Where the warden stands: the school in the Schoolstraat.
HERE = {"latitude": 51.05612, "longitude": 3.27455}


async def test_a_warden_registers_what_they_saw_with_location_and_photo(
    inbox: Inbox, new_context: NewContext, artefacts: Path
) -> None:
    await inbox.add_user("wim@wingene.example", "agent", ("technical-service",), name="Wim Baert")
    # A tablet: a narrow screen, and the browser may tell where it is.
    context = await new_context(
        viewport={"width": 800, "height": 1100},
        geolocation=HERE,
        permissions=["geolocation"],
    )
    page = await context.new_page()
    errors = problems(page)
    await page.goto(inbox.url("/"))
    await sign_in_with_the_keyboard(page, "wim@wingene.example")

    await page.get_by_role("link", name="Nieuw ticket").click()
    await expect(page.get_by_role("heading", name="Een ticket registreren")).to_be_visible()
    await page.get_by_label("Zelf gezien op het terrein").check()
    await page.get_by_label("Onderwerp").fill("Verzakt voetpad aan de school")
    await page.get_by_label("Wat is er aan de hand?").fill(
        "Het voetpad is verzakt voor de schoolpoort. Er ligt een losse tegel."
    )
    await page.get_by_label("Adres of plaats").fill("Schoolstraat 3, Wingene")
    await page.get_by_role("button", name="Gebruik mijn locatie").click()
    await expect(page.get_by_role("status")).to_have_text("Uw locatie is ingevuld.")
    await expect(page.get_by_label("Breedtegraad")).to_have_value("51.056120")
    await expect(page.get_by_label("Lengtegraad")).to_have_value("3.274550")
    await page.get_by_label("Foto's of bestanden").set_input_files(
        {"name": "voetpad.png", "mimeType": "image/png", "buffer": png(4, 3)}
    )
    await page.screenshot(path=artefacts / "register.png", full_page=True)
    await page.get_by_role("button", name="Ticket registreren").click()

    await expect(page).to_have_url(re.compile(r"/tickets/1750-\d{6}$"))
    reference = URL(page.url).path.rsplit("/", 1)[-1]
    await expect(page.get_by_role("status").first).to_have_text(
        f"Ticket {reference} is geregistreerd. Geef de burger dit nummer: {reference}."
    )
    await expect(page.get_by_role("heading", name=re.compile(reference))).to_be_visible()
    # The photo: the file, and its preview shown from meldpunt itself.
    await expect(page.get_by_role("link", name="voetpad.png", exact=True)).to_be_visible()
    preview = page.get_by_role("img", name=re.compile("voetpad.png"))
    await expect(preview).to_be_visible()
    assert await preview.evaluate("img => img.naturalWidth") == 4
    # The place, typed and found.
    await expect(page.get_by_text("Schoolstraat 3, Wingene")).to_be_visible()
    await expect(page.get_by_text("51.056120, 3.274550")).to_be_visible()
    await expect(page.get_by_text("Met de hand geregistreerd door Wim Baert")).to_be_visible()
    assert errors == []
