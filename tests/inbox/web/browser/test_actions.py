"""Work actions in headless Chromium: an agent takes a ticket, then transfers it with a reason.

The rules behind the forms (scope, CSRF, every action and its errors) are tested over HTTP on
both backends in tests/inbox/web/test_actions.py; here the forms are used as staff use them, by
role and accessible name, and a screenshot of the ticket page with its actions is kept under
var/test-artefacts/inbox/.
"""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Page, expect

from tests.browser import NewContext
from tests.inbox.web.browser.conftest import Inbox
from tests.inbox.web.conftest import PASSWORD

REASON = "Gaat over het containerpark: dat is voor Milieu."


async def sign_in(page: Page, inbox: Inbox, email: str) -> None:
    await page.goto(inbox.url("/login"))
    await page.get_by_label("E-mailadres").fill(email)
    await page.get_by_label("Wachtwoord").fill(PASSWORD)
    await page.get_by_role("button", name="Aanmelden").click()
    await expect(page.get_by_role("heading", name="Tickets")).to_be_visible()


async def test_an_agent_takes_a_ticket_and_transfers_it_with_a_reason(
    inbox: Inbox, page: Page, new_context: NewContext, artefacts: Path
) -> None:
    await inbox.add_user("an@wingene.example", "agent", ("front-desk",), name="An Peeters")
    await inbox.add_user("els@wingene.example", "agent", ("environment",), name="Els Claes")
    reference = await inbox.submit(
        "Tot hoe laat mag ik zaterdag met mijn aanhangwagen komen?",
        "Openingsuren zaterdag",
        name="Mie Janssens",
        email="mie@example.be",
    )

    await sign_in(page, inbox, "an@wingene.example")
    await page.get_by_role("link", name=reference).click()
    actions = page.get_by_role("region", name="Acties")
    await expect(actions.get_by_role("heading", name="Toegewezen aan: niemand")).to_be_visible()
    await actions.get_by_role("button", name="Aan mij toewijzen").click()
    await expect(page.get_by_role("status")).to_have_text(
        "Het ticket is toegewezen aan An Peeters."
    )
    await expect(actions.get_by_role("heading", name="Toegewezen aan: An Peeters")).to_be_visible()
    await expect(actions.get_by_role("button", name="Aan mij toewijzen")).to_have_count(0)
    await page.screenshot(path=artefacts / "ticket-actions.png", full_page=True)

    transfer = page.get_by_role("form", name="Doorsturen naar een andere dienst")
    await transfer.get_by_label("Naar dienst").select_option(label="Milieu en afval")
    await transfer.get_by_label("Reden").fill(REASON)
    await transfer.get_by_role("button", name="Doorsturen").click()
    # Back on the list, which the ticket has left: the agent no longer sees it.
    await expect(page.get_by_role("status")).to_have_text(
        f"Ticket {reference} is doorgestuurd naar Milieu en afval. U ziet het niet meer."
    )
    await expect(page.get_by_role("heading", name="Tickets")).to_be_visible()
    await expect(page.get_by_role("link", name=reference)).to_have_count(0)

    # Els of the environment department finds it, with who sent it and why.
    els = await (await new_context()).new_page()
    await sign_in(els, inbox, "els@wingene.example")
    await els.get_by_role("link", name=reference).click()
    await expect(
        els.get_by_role("heading", name=f"{reference} — Openingsuren zaterdag")
    ).to_be_visible()
    # The ticket's history says who sent it, from where and why.
    history = els.locator("ol.history").get_by_role("listitem")
    transfer = history.filter(has_text=REASON)
    await expect(transfer).to_have_count(1)
    await expect(transfer).to_contain_text("Onthaal → Milieu en afval")
    await expect(transfer).to_contain_text("An Peeters")
    await expect(history.filter(has_text="Toegewezen")).to_contain_text("An Peeters")
    # Taken by nobody in the new department yet.
    await expect(
        els.get_by_role("region", name="Acties").get_by_role(
            "heading", name="Toegewezen aan: niemand"
        )
    ).to_be_visible()
