"""The reply box in headless Chromium: answering on the ticket's channel and on another one of
the citizen, the SMS counter while typing, an internal note, and resolving with a canned answer.

The service runs with SMS and WhatsApp through a local fake of Twilio, so a citizen known by an
e-mail address and a phone number can be answered by SMS too. The HTTP tests
(tests/inbox/web/test_replybox.py) cover the rules on both databases; these show the pages work
in a browser, scripts included, with nothing blocked by the Content-Security-Policy.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestServer
from playwright.async_api import Page, expect
from sqlmodel import col

from ingest.model import ContactRef, Identity, IdentityKind
from meldpunt.app import RUNTIME, create_app
from store.models import Message, OutboxRow, Ticket
from tests.conftest import rows
from tests.connectors.twilio.conftest import (  # noqa: F401 - the fixture, for this module
    ACCOUNT_SID,
    AUTH_TOKEN,
    FakeTwilio,
    fake_twilio,
)
from tests.inbox.web.browser.conftest import Inbox
from tests.inbox.web.browser.test_signin import problems
from tests.inbox.web.conftest import PASSWORD
from tests.messages import inbound
from tests.service import sample_config, until

PHONE = "+32470123456"
SMS_NUMBER = "+3250111111"
QUEUED = "Uw antwoord staat klaar om te versturen."


@pytest.fixture
async def inbox(
    tmp_path: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    fake_twilio: FakeTwilio,  # noqa: F811
) -> AsyncIterator[Inbox]:
    """The sample town with Twilio sending SMS and WhatsApp (to the fake)."""
    for name, value in {
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_API_BASE": fake_twilio.base,
        "TWILIO_SMS_NUMBER": SMS_NUMBER,
        "TWILIO_WHATSAPP_SENDER": "+3250222222",
    }.items():
        monkeypatch.setenv(name, value)
    config = sample_config(tmp_path, database_url, monkeypatch)
    server = TestServer(create_app(config, migrate=True), host="127.0.0.1")
    await server.start_server()
    try:
        yield Inbox(server)
    finally:
        await server.close()


async def citizen_writes(inbox: Inbox, text: str) -> str:
    """A web form message of Mie, who gave her e-mail address and her phone number."""
    sender = ContactRef(
        (Identity(IdentityKind.EMAIL, "mie@example.be"), Identity(IdentityKind.PHONE, PHONE)),
        display_name="Mie Janssens",
    )
    message = dataclasses.replace(inbound(text, subject="Vraag"), sender=sender)
    result = await inbox.app[RUNTIME].intake.submit(message)
    assert result.ticket_reference is not None
    return result.ticket_reference


async def sign_in(page: Page, inbox: Inbox, reference: str) -> None:
    await page.goto(inbox.url(f"/tickets/{reference}"))
    await page.get_by_label("E-mailadres").fill("els@wingene.example")
    await page.get_by_label("Wachtwoord").fill(PASSWORD)
    await page.get_by_role("button", name="Aanmelden").click()
    await expect(page.get_by_role("heading", name=re.compile(reference))).to_be_visible()


async def answers(inbox: Inbox, reference: str) -> list[sa.RowMapping]:
    [ticket] = await rows(inbox.db, Ticket, col(Ticket.reference) == reference)
    return [
        r
        for r in await rows(inbox.db, OutboxRow, col(OutboxRow.ticket_id) == ticket["id"])
        if r["purpose"] == "reply"
    ]


async def test_staff_answer_on_the_tickets_channel_then_by_sms_watching_the_counter(
    inbox: Inbox,
    page: Page,
    fake_twilio: FakeTwilio,  # noqa: F811
    artefacts: Path,
) -> None:
    await inbox.add_user("els@wingene.example", "operator", (), name="Els Claes")
    reference = await citizen_writes(inbox, "Wanneer is het containerpark open?")
    errors = problems(page)
    await sign_in(page, inbox, reference)

    box = page.locator("#replybox")
    email = box.get_by_role("radio", name=re.compile(r"^e-mail — mie@example\.be"))
    sms = box.get_by_role("radio", name=re.compile(rf"^sms — {re.escape(PHONE)}"))
    await expect(email).to_be_checked()
    counter = box.locator("#replybox-count")
    await expect(counter).to_be_hidden()  # e-mail has no counter

    await box.get_by_label("Uw antwoord aan de burger").fill("Het is open van 9 tot 17 uur.")
    await box.get_by_role("button", name="Antwoord versturen").click()
    await expect(page.get_by_role("status")).to_have_text(QUEUED)
    await expect(page.locator(".conversation")).to_contain_text("Het is open van 9 tot 17 uur.")
    [first] = await answers(inbox, reference)
    assert (first["channel"], first["recipient"]) == ("email", "mie@example.be")

    # By SMS: the counter appears and follows the typing, with the server's count.
    await sms.check()
    await expect(counter).to_be_visible()
    await expect(counter).to_contain_text("0 tekens · 1 sms")
    text = box.get_by_label("Uw antwoord aan de burger")
    await text.press_sequentially("Zaterdag ook open tot 12 uur. ", delay=5)
    await expect(counter).to_contain_text("30 tekens · 1 sms")
    await text.fill("x" * 160)
    await text.press("End")
    await text.press_sequentially("y")
    await expect(counter).to_contain_text("161 tekens · 2 sms")
    await text.fill("Zaterdag ook open tot 12 uur.")
    await text.press_sequentially(" ë")
    await expect(counter).to_contain_text("31 tekens · 1 sms")
    await page.screenshot(path=artefacts / "ticket-reply-box.png", full_page=True)

    await box.get_by_role("button", name="Antwoord versturen").click()
    await expect(page.get_by_role("status")).to_have_text(QUEUED)
    _, second = await answers(inbox, reference)
    assert (second["channel"], second["recipient"]) == ("sms", PHONE)

    # And it went out, by SMS, to the citizen's number.
    async def texted() -> bool:
        return any(c.get("Body") == "Zaterdag ook open tot 12 uur. ë" for c in fake_twilio.sent())

    await until(texted, "the SMS answer sent to Twilio")
    [sent] = [c for c in fake_twilio.sent() if c.get("Body") == "Zaterdag ook open tot 12 uur. ë"]
    assert (sent["To"], sent["From"]) == (PHONE, SMS_NUMBER)
    assert errors == []


async def test_a_note_stays_internal(inbox: Inbox, page: Page) -> None:
    await inbox.add_user("els@wingene.example", "operator", (), name="Els Claes")
    reference = await citizen_writes(inbox, "Er ligt glas op het fietspad.")
    errors = problems(page)
    await sign_in(page, inbox, reference)
    # The acknowledgement may be on its way meanwhile: compare which rows exist, not their state.
    outbox_before = {r["id"] for r in await rows(inbox.db, OutboxRow)}

    note = page.get_by_label("Notitie — intern: de burger ziet dit nooit")
    await note.fill("Technische dienst gebeld: ze vegen morgen.")
    await page.get_by_role("button", name="Notitie bewaren").click()
    await expect(page.get_by_role("status")).to_have_text(
        "De interne notitie is bewaard. De burger ziet ze niet."
    )
    shown = page.locator(".conversation .message.note")
    await expect(shown).to_contain_text("Technische dienst gebeld: ze vegen morgen.")
    await expect(shown).to_contain_text("Interne notitie")
    # Kept on the ticket, queued for no one.
    [stored] = await rows(inbox.db, Message, col(Message.direction) == "note")
    assert stored["text"] == "Technische dienst gebeld: ze vegen morgen."
    assert {r["id"] for r in await rows(inbox.db, OutboxRow)} == outbox_before
    assert errors == []


async def test_resolve_with_a_canned_answer_in_one_step(inbox: Inbox, page: Page) -> None:
    await inbox.add_user("els@wingene.example", "operator", (), name="Els Claes")
    reference = await citizen_writes(inbox, "Mijn vuilniszak is niet opgehaald.")
    errors = problems(page)
    await sign_in(page, inbox, reference)
    box = page.locator("#replybox")

    # Picking an answer fills the box at once, without a reload, for this ticket.
    address = page.url
    await box.get_by_label("Standaardantwoord").select_option(label="Afval niet opgehaald")
    text = box.get_by_label("Uw antwoord aan de burger")
    await expect(text).to_have_value(re.compile(r"^Beste Mie Janssens,\n"))
    await expect(text).to_have_value(re.compile(r"Els Claes$"))
    assert page.url == address
    await text.press("End")
    await text.press_sequentially("\nPS: sorry voor het ongemak.")

    await box.get_by_label(re.compile("^Afhandelen met dit antwoord")).check()
    await box.get_by_role("button", name="Antwoord versturen").click()
    await expect(page.get_by_role("status")).to_contain_text("Het ticket is afgehandeld.")
    await expect(page.locator("dl.facts")).to_contain_text("afgehandeld")
    [answer] = await answers(inbox, reference)
    # The town's "it's done" notice, with the answer in it, by e-mail.
    assert answer["channel"] == "email"
    assert "PS: sorry voor het ongemak." in answer["body"]
    assert f"Uw melding {reference} is nu behandeld." in answer["body"]
    [ticket] = await rows(inbox.db, Ticket, col(Ticket.reference) == reference)
    assert ticket["status"] == "resolved"
    assert errors == []
