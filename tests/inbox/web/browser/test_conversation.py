"""Reading a conversation in headless Chromium: a hostile HTML mail runs nothing and loads nothing,
another department's ticket and files are not found, and a screenshot of a rich ticket view.

The hostile mail's tracking pixels point at a small server on 127.0.0.1 that counts every
request it gets; it must get none. The page's Content-Security-Policy would block most of it
anyway, so that test switches the policy off in the browser: the cleaning alone must hold.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import Page, expect
from sqlmodel import col

from store.models import AttachmentRow, Message, Ticket
from tests.browser import NewContext
from tests.inbox.web.browser.conftest import Inbox
from tests.inbox.web.conftest import PASSWORD, street_lamp_photo, submit_mail

MARKER = "[afbeelding van buiten niet geladen]"


class Tracker:
    """A stranger's server: answers every request with a pixel and remembers it."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.hit)
        self.server = TestServer(app, host="127.0.0.1")

    async def hit(self, request: web.Request) -> web.Response:
        self.hits.append(request.path_qs)
        return web.Response(body=b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", content_type="image/gif")

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))


@pytest.fixture
async def tracker() -> AsyncIterator[Tracker]:
    found = Tracker()
    await found.server.start_server()
    try:
        yield found
    finally:
        await found.server.close()


def hostile_mail(tracker: Tracker) -> str:
    """Everything a sender could try to run code or to learn that the mail was read."""
    t = tracker.url
    return f"""<html><head>
<link rel="stylesheet" href="{t("/style.css")}">
<style>body {{ background: url({t("/style-bg.png")}) }}</style>
<base href="{t("/base/")}">
<meta http-equiv="refresh" content="0; url={t("/refresh")}">
<script>window.pwned = true; document.title = "pwned";</script>
</head><body onload="window.pwned = true">
<p>Beste, de straatlamp in de Kerkstraat brandt niet.</p>
<img src="{t("/pixel.gif?campagne=lamp")}" width="1" height="1" alt="">
<img src="x" onerror="window.pwned = true; document.title = 'pwned';
  new Image().src = '{t("/onerror")}'">
<img srcset="{t("/srcset.png")} 2x" alt="srcset">
<p style="background-image: url({t("/inline-style.png")})">Met een achtergrond.</p>
<table background="{t("/table.png")}"><tr><td>Kerkstraat 12</td></tr></table>
<svg onload="window.pwned = true"><image href="{t("/svg.png")}"/></svg>
<iframe src="{t("/frame")}"></iframe>
<object data="{t("/object")}"></object><embed src="{t("/embed")}">
<video poster="{t("/poster.png")}"></video>
<form action="{t("/form")}"><input type="image" src="{t("/input.png")}">
  <button>Verstuur</button></form>
<a id="klik" href="javascript:window.pwned = true">Klik hier</a>
</body></html>"""


async def sign_in(page: Page, inbox: Inbox, email: str, target: str) -> None:
    await page.goto(inbox.url(f"/login?next={target}"))
    await page.get_by_label("E-mailadres").fill(email)
    await page.get_by_label("Wachtwoord").fill(PASSWORD)
    async with page.expect_navigation():
        await page.get_by_label("Wachtwoord").press("Enter")


async def store_html(inbox: Inbox, reference: str, html: str) -> None:
    """The HTML as a version of meldpunt that did not clean it would have stored it."""
    async with inbox.db.session() as session:
        query = sa.select(col(Ticket.id)).where(col(Ticket.reference) == reference)
        ticket_id = (await session.scalars(query)).one()
        await session.execute(
            sa.update(Message)
            .where(col(Message.ticket_id) == ticket_id, col(Message.direction) == "in")
            .values(html=html)
        )
        await session.commit()


async def test_a_hostile_html_mail_runs_nothing_and_loads_nothing(
    inbox: Inbox, new_context: NewContext, tracker: Tracker
) -> None:
    hostile = hostile_mail(tracker)
    reference = await submit_mail(
        inbox.app,
        text="Beste, de straatlamp in de Kerkstraat brandt niet.",
        subject="Straatlamp Kerkstraat",
        html=hostile,
    )
    await inbox.add_user("an@wingene.example", "operator", (), name="An Peeters")
    # Without the page's Content-Security-Policy: the cleaning alone must hold.
    page = await (await new_context(bypass_csp=True)).new_page()
    await sign_in(page, inbox, "an@wingene.example", f"/tickets/{reference}")

    # As today's intake stored it, then as an older version might have stored it: raw.
    for stored in ("cleaned at intake", "raw"):
        if stored == "raw":
            await store_html(inbox, reference, hostile)
            await page.reload()
        mail = page.locator(".conv-html")
        await expect(mail).to_contain_text("de straatlamp in de Kerkstraat brandt niet")
        await expect(mail).to_contain_text("Kerkstraat 12")
        await page.wait_for_load_state("networkidle")
        # The link lost its javascript: address; clicking it does nothing.
        await mail.get_by_text("Klik hier").click()
        assert tracker.hits == [], stored
        assert await page.evaluate("window.pwned") is None, stored
        assert await page.title() == f"{reference} – meldpunt Wingene", stored
        # Staff see that images were left out; nothing that loads or embeds is left.
        await expect(mail.get_by_text(MARKER)).not_to_have_count(0)
        await expect(mail.locator("img, iframe, object, embed, video, svg, form")).to_have_count(0)


async def test_another_departments_ticket_and_files_are_not_found(inbox: Inbox, page: Page) -> None:
    waste = await submit_mail(
        inbox.app,
        text="De vuilniszakken in de Kerkstraat zijn niet opgehaald.",
        subject="Vuilniszakken niet opgehaald",
        files=[("zakken.png", "image/png", street_lamp_photo(40, 30))],
    )
    async with inbox.db.session() as session:
        [bags] = (
            await session.scalars(
                sa.select(col(AttachmentRow.id))
                .join(Message, col(Message.id) == col(AttachmentRow.message_id))
                .join(Ticket, col(Ticket.id) == col(Message.ticket_id))
                .where(col(Ticket.reference) == waste)
            )
        ).all()
    await inbox.add_user("balie@wingene.example", "agent", ("front-desk",), name="Bart Baert")
    await sign_in(page, inbox, "balie@wingene.example", "/")
    await expect(page.get_by_role("heading", name="Tickets")).to_be_visible()

    response = await page.goto(inbox.url(f"/tickets/{waste}"))
    assert response is not None and response.status == 404
    await expect(page.locator("body")).not_to_contain_text("vuilniszakken")
    for path in (f"/tickets/{waste}/files/{bags}", f"/tickets/{waste}/files/{bags}?view=1"):
        response = await page.goto(inbox.url(path))
        assert response is not None and response.status == 404
        await expect(page.get_by_role("alert")).to_have_text(
            "Dit bestand bestaat niet, of u mag het niet zien."
        )
        await expect(page.locator("img")).to_have_count(0)


async def test_a_rich_ticket_view_is_saved_as_a_screenshot(
    inbox: Inbox, new_context: NewContext, artefacts: Path, tracker: Tracker
) -> None:
    await submit_mail(
        inbox.app,
        text="Ook de lamp aan de kerk is stuk.",
        subject="Lamp aan de kerk",
    )
    photo = street_lamp_photo()
    reference = await submit_mail(
        inbox.app,
        text="Beste,\n\nDe straatlamp voor huisnummer 12 in de Kerkstraat brandt al een week "
        "niet. 's Avonds is het daar erg donker en gevaarlijk voor de kinderen die naar de "
        "sporthal fietsen.\n\nMet vriendelijke groeten,\nMie Janssens",
        subject="Straatlamp kapot in de Kerkstraat",
        html=f"""<div><p>Beste,</p>
<p>De <b>straatlamp</b> voor huisnummer 12 in de Kerkstraat brandt al een week niet.
's Avonds is het daar <i>erg donker</i> en gevaarlijk voor de kinderen die naar de sporthal
fietsen.</p>
<table><tr><td><b>Adres</b></td><td>Kerkstraat 12, 8750 Wingene</td></tr>
<tr><td><b>Paalnummer</b></td><td>WG-0412</td></tr></table>
<p>Ik heb een foto bijgevoegd.</p>
<p>Met vriendelijke groeten,<br>Mie Janssens</p>
<p><a href="https://www.wingene.be/straatverlichting">Straatverlichting in Wingene</a></p>
<img src="{tracker.url("/open.gif?nieuwsbrief=nov")}" width="1" height="1"></div>""",
        files=[
            ("straatlamp-kerkstraat.png", "image/png", photo),
            ("IMG_4032.MOV", "video/quicktime", None),
        ],
    )
    await inbox.add_user("td@wingene.example", "agent", ("technical-service",), name="Tom Dierickx")
    page = await (await new_context(viewport={"width": 1280, "height": 900})).new_page()
    await sign_in(page, inbox, "td@wingene.example", f"/tickets/{reference}")

    await expect(page.get_by_role("heading", name=re.compile(reference))).to_be_visible()
    routing = page.locator(".conv-routing")
    await expect(routing).to_contain_text(
        "Doorgestuurd naar Technische dienst door regel straatverlichting"
    )
    await expect(routing).to_contain_text("Ook toegepast: regel gevaar")
    mail = page.locator(".conv-html")
    await expect(mail.locator("b").first).to_have_text("straatlamp")
    await expect(mail.get_by_text(MARKER)).to_have_count(1)
    link = mail.get_by_role("link", name="Straatverlichting in Wingene")
    await expect(link).to_have_attribute("rel", "noopener noreferrer nofollow")
    # The photo's preview loaded from meldpunt itself, under the page's own policy.
    thumb = page.get_by_role("img", name="Voorbeeld van straatlamp-kerkstraat.png")
    await expect(thumb).to_be_visible()
    assert await thumb.evaluate("img => img.naturalWidth") == 240
    await expect(
        page.get_by_role("link", name="straatlamp-kerkstraat.png", exact=True)
    ).to_be_visible()
    await expect(page.get_by_text("IMG_4032.MOV (30 MB) — niet bewaard")).to_be_visible()
    # The plain text is one click away.
    plain = page.locator("details.conv-plain")
    await plain.get_by_text("Tekstversie").click()
    await expect(plain).to_contain_text("Met vriendelijke groeten")
    others = page.locator(".conv-others")
    await expect(others).to_contain_text("Lamp aan de kerk")
    await expect(page.locator("ol.history")).to_contain_text("Doorgestuurd · meldpunt")
    assert tracker.hits == []

    await page.screenshot(path=artefacts / "ticket.png", full_page=True)
    assert (artefacts / "ticket.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
