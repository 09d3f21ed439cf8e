"""The chat widget in headless Chromium, on the town's site, against the running service.

Each test is a visitor's path: write and see the reference and the queue, get a staff answer
live, come back after a reload, lose the connection, leave a message out of office hours, send a
photo, use only the keyboard, read French on a phone.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import expect

from store.models import AttachmentRow, ContactIdentity, Message, Ticket, table_of
from tests.connectors.webchat.browser.conftest import (
    REFERENCE,
    Meldpunt,
    NewVisitor,
    StartMeldpunt,
    Visitor,
    closed_today,
    png,
    tomorrow_at,
)
from tests.service import until

MESSAGES = table_of(Message)
IDENTITIES = table_of(ContactIdentity)
ARTEFACT = Path(__file__).resolve().parents[4] / "var" / "test-artefacts" / "webchat.png"
DAYS_NL = ("maandag", "dinsdag", "woensdag", "donderdag", "vrijdag", "zaterdag", "zondag")
MONTHS_NL = (
    "januari", "februari", "maart", "april", "mei", "juni",
    "juli", "augustus", "september", "oktober", "november", "december",
)  # fmt: skip
BLUE = "rgb(11, 92, 173)"


async def test_a_visitor_writes_and_sees_the_reference_and_the_queue(
    meldpunt: Meldpunt, new_visitor: NewVisitor
) -> None:
    first = await new_visitor()
    await first.visit()
    await expect(first.dialog).to_be_hidden()
    await first.open()
    await expect(first.message_box).to_be_focused()

    await first.write("Er ligt een omgevallen boom over de Kerkstraat.")
    mine = first.lines("visitor").last
    await expect(mine).to_contain_text("Er ligt een omgevallen boom over de Kerkstraat.")
    await expect(mine).to_have_attribute("data-state", "sent")
    await expect(mine).to_contain_text("Verzonden")
    [ticket] = await meldpunt.wait_for_rows(1, Ticket)
    assert ticket["origin_channel"] == "webchat"
    assert REFERENCE.fullmatch(ticket["reference"])
    await expect(first.dialog).to_contain_text(f"Uw referentie: {ticket['reference']}")
    await expect(first.dialog).to_contain_text(
        "U bent nummer 1 in de wachtrij. Een medewerker helpt u zo snel mogelijk."
    )

    # A second visitor, in a browser of their own, queues behind the first.
    second = await new_visitor()
    await second.visit()
    await second.open()
    await second.write("Wanneer is het recyclagepark open?")
    await expect(second.lines("visitor").last).to_have_attribute("data-state", "sent")
    await expect(second.dialog).to_contain_text(
        "U bent nummer 2 in de wachtrij. Een medewerker helpt u zo snel mogelijk."
    )
    await expect(first.dialog).to_contain_text("U bent nummer 1 in de wachtrij.")
    tickets = await meldpunt.wait_for_rows(2, Ticket)
    assert len({t["reference"] for t in tickets}) == 2
    await expect(second.dialog).to_contain_text(f"Uw referentie: {tickets[1]['reference']}")

    # What assistive technology is told: the button and the dialog by role and name.
    snapshot = await first.page.locator("body").aria_snapshot()
    assert '- button "Chat met ons" [expanded]' in snapshot, snapshot
    assert '- dialog "Chat met ons"' in snapshot, snapshot
    assert '- log "Gesprek"' in snapshot, snapshot
    assert '- textbox "Uw bericht"' in snapshot, snapshot
    assert '- button "Foto toevoegen"' in snapshot, snapshot
    assert '- button "Verzenden"' in snapshot, snapshot
    await expect(first.page.get_by_role("dialog", name="Chat met ons")).to_have_attribute(
        "aria-modal", "false"
    )

    ARTEFACT.parent.mkdir(parents=True, exist_ok=True)
    await first.page.screenshot(path=ARTEFACT)
    assert ARTEFACT.stat().st_size > 0


async def test_a_staff_answer_appears_live_and_the_conversation_survives_a_reload(
    meldpunt: Meldpunt, visitor: Visitor
) -> None:
    await visitor.visit()
    await visitor.open()
    await visitor.write("Mijn vuilniszak is niet opgehaald.")
    await expect(visitor.lines("visitor").last).to_have_attribute("data-state", "sent")
    [ticket] = await meldpunt.wait_for_rows(1, Ticket)
    await expect(visitor.dialog).to_contain_text("U bent nummer 1 in de wachtrij.")

    await meldpunt.reply(
        ticket["reference"], "We halen hem morgen op. Meer op https://www.wingene.be/afval."
    )
    answer = visitor.lines("staff").filter(has_text="We halen hem morgen op.")
    await expect(answer).to_have_count(1)
    await expect(answer.get_by_role("link")).to_have_attribute(
        "href", "https://www.wingene.be/afval"
    )
    # Answered: no longer waiting in the queue.
    await expect(visitor.dialog.get_by_text("wachtrij")).to_have_count(0)

    # A reload, then another page of the town's site: the same conversation, still open.
    for page in ("/", "/afval"):
        await visitor.visit(page)
        await expect(visitor.dialog).to_be_visible()
        await expect(visitor.lines("visitor")).to_have_count(1)
        await expect(visitor.lines("visitor")).to_contain_text(
            ["Mijn vuilniszak is niet opgehaald."]
        )
        await expect(answer).to_have_count(1)
        await expect(visitor.dialog).to_contain_text(f"Uw referentie: {ticket['reference']}")

    # Closed, a second answer comes in: the button says there is something new.
    await visitor.dialog.get_by_role("button", name="Chat sluiten").click()
    await expect(visitor.dialog).to_be_hidden()
    await meldpunt.reply(ticket["reference"], "Of wilt u hem zelf naar het recyclagepark brengen?")
    await expect(
        visitor.page.get_by_role("button", name="Chat met ons 1 nieuw bericht")
    ).to_be_visible()
    await visitor.page.get_by_role("button", name="Chat met ons 1 nieuw bericht").click()
    await expect(visitor.lines("staff").filter(has_text="recyclagepark")).to_have_count(1)
    await expect(visitor.launcher).to_be_visible()


async def test_messages_written_while_disconnected_are_sent_once_the_connection_is_back(
    meldpunt: Meldpunt, visitor: Visitor
) -> None:
    await visitor.visit()
    await visitor.open()
    await visitor.write("Eerste bericht.")
    await expect(visitor.lines("visitor").last).to_have_attribute("data-state", "sent")

    await meldpunt.stop()
    await expect(visitor.dialog).to_contain_text("Verbinding verbroken, we proberen opnieuw…")
    await visitor.write("Geschreven zonder verbinding.")
    waiting = visitor.lines("visitor").filter(has_text="Geschreven zonder verbinding.")
    await expect(waiting).to_have_attribute("data-state", "pending")
    await expect(waiting).to_contain_text("Wordt verzonden…")
    # Kept over a reload too.
    await visitor.page.reload()
    await expect(waiting).to_have_attribute("data-state", "pending")

    await meldpunt.start()
    await expect(waiting).to_have_attribute("data-state", "sent", timeout=20_000)
    await expect(visitor.dialog).not_to_contain_text("Verbinding verbroken")
    await expect(visitor.lines("visitor")).to_have_count(2)
    texts = [r["text"] for r in await meldpunt.rows(Message, MESSAGES.c.direction == "in")]
    assert texts == ["Eerste bericht.", "Geschreven zonder verbinding."]


async def test_out_of_hours_the_visitor_leaves_a_message_with_an_email_address(
    start_meldpunt: StartMeldpunt, visitor: Visitor
) -> None:
    meldpunt = await start_meldpunt(office_hours=closed_today())
    await visitor.visit()
    await visitor.open()
    back = tomorrow_at(8, 30)
    await expect(visitor.dialog).to_contain_text(
        "De chat is nu gesloten. We zijn er weer op "
        f"{DAYS_NL[back.weekday()]} {back.day} {MONTHS_NL[back.month - 1]} om 08:30."
    )
    form = visitor.dialog.get_by_role("region", name="De chat is nu gesloten", exact=False)
    text = form.get_by_role("textbox", name="Uw bericht")
    email = form.get_by_role("textbox", name="E-mailadres")
    send = form.get_by_role("button", name="Bericht versturen")
    await expect(text).to_be_focused()
    await expect(visitor.dialog.get_by_role("button", name="Verzenden")).to_be_hidden()

    # Checked before anything is sent: an address is needed, and it must look like one.
    await text.fill("Graag een afspraak voor een nieuwe identiteitskaart.")
    await send.click()
    await expect(form).to_contain_text("Vul een e-mailadres of een telefoonnummer in.")
    await expect(email).to_be_focused()
    await email.fill("jan.peeters@")
    await send.click()
    await expect(form).to_contain_text("Dit e-mailadres klopt niet.")
    await expect(email).to_have_attribute("aria-invalid", "true")
    assert await meldpunt.rows(Ticket) == []

    await email.fill("jan.peeters@example.be")
    await send.click()
    [ticket] = await meldpunt.wait_for_rows(1, Ticket)
    await expect(visitor.dialog).to_contain_text(
        f"Bedankt. We hebben uw bericht ontvangen. Uw referentie: {ticket['reference']}."
    )
    await expect(send).to_be_hidden()
    identities = await meldpunt.rows(
        ContactIdentity, IDENTITIES.c.contact_id == ticket["contact_id"]
    )
    assert ("email", "jan.peeters@example.be") in {(i["kind"], i["value"]) for i in identities}
    [message] = await meldpunt.rows(
        Message, MESSAGES.c.ticket_id == ticket["id"], MESSAGES.c.direction == "in"
    )
    assert message["text"] == "Graag een afspraak voor een nieuwe identiteitskaart."


async def test_the_visitor_leaves_a_phone_number_for_an_answer_after_leaving(
    meldpunt: Meldpunt, visitor: Visitor
) -> None:
    await visitor.visit()
    await visitor.open()
    await visitor.write("Is mijn rijbewijs klaar?")
    await expect(visitor.lines("visitor").last).to_have_attribute("data-state", "sent")
    [ticket] = await meldpunt.wait_for_rows(1, Ticket)

    await visitor.dialog.get_by_text("E-mail of telefoon achterlaten").click()
    phone = visitor.dialog.get_by_role("textbox", name="Telefoonnummer")
    await phone.fill("0470 12 34 56")
    await visitor.dialog.get_by_role("button", name="Bewaren").click()
    await expect(visitor.dialog).to_contain_text(
        "Bewaard. Bent u weg als we antwoorden? Dan krijgt u het antwoord per telefoon."
    )

    async def kinds() -> set[str]:
        found = await meldpunt.rows(
            ContactIdentity, IDENTITIES.c.contact_id == ticket["contact_id"]
        )
        return {i["kind"] for i in found}

    assert {"webchat", "phone"} <= await kinds()


async def test_a_photo_is_uploaded_and_shown_in_the_conversation(
    start_meldpunt: StartMeldpunt, visitor: Visitor
) -> None:
    meldpunt = await start_meldpunt(max_upload_bytes=2048)
    await visitor.visit()
    await visitor.open()
    await visitor.write("Kijk naar deze put in de weg.")
    await expect(visitor.lines("visitor").last).to_have_attribute("data-state", "sent")
    attach = visitor.dialog.get_by_role("button", name="Foto toevoegen")

    # Refused in the browser, before any upload: the wrong type, then too large.
    for name, mime, data, error in (
        ("brief.txt", "text/plain", b"hallo", "Dit soort bestand kan niet. Kies een foto."),
        (
            "groot.png",
            "image/png",
            png() + b"\0" * 4096,
            "Deze foto is te groot. Het maximum is 2 kB.",
        ),
    ):
        async with visitor.page.expect_file_chooser() as chooser:
            await attach.click()
        await (await chooser.value).set_files({"name": name, "mimeType": mime, "buffer": data})
        await expect(visitor.dialog).to_contain_text(error)
    await expect(visitor.lines("visitor")).to_have_count(1)

    async with visitor.page.expect_file_chooser() as chooser:
        await attach.click()
    await (await chooser.value).set_files(
        {"name": "put.png", "mimeType": "image/png", "buffer": png()}
    )
    photo = visitor.lines("visitor").get_by_role("img", name="Foto: put.png")
    await expect(photo).to_be_visible()
    await expect(visitor.lines("visitor").last).to_have_attribute("data-state", "sent")
    [attachment] = await meldpunt.wait_for_rows(1, AttachmentRow)
    assert (attachment["filename"], attachment["content_type"]) == ("put.png", "image/png")
    assert attachment["size"] == len(png())

    # After a reload the photo comes from meldpunt, and loads.
    await visitor.page.reload()
    await expect(photo).to_be_visible()
    src = await photo.get_attribute("src")
    assert src is not None and src.startswith(f"{meldpunt.base}/chat/files/"), src

    async def loaded() -> bool:
        return bool(await photo.evaluate("img => img.complete && img.naturalWidth === 3"))

    await until(loaded, "the photo loaded from meldpunt")


async def test_keyboard_only(meldpunt: Meldpunt, visitor: Visitor) -> None:
    await visitor.visit()
    keyboard = visitor.page.keyboard
    for _ in range(10):
        await keyboard.press("Tab")
        if await visitor.focused() == "button: Chat met ons":
            break
    else:
        pytest.fail(f"Tab never reached the chat button; last focus: {await visitor.focused()}")
    # The focus ring is visible (a white and a dark ring around the button).
    ring = await visitor.launcher.evaluate("b => getComputedStyle(b).boxShadow")
    assert "rgb(26, 26, 26)" in ring, ring

    await keyboard.press("Enter")
    await expect(visitor.dialog).to_be_visible()
    assert await visitor.focused() == "textarea: Uw bericht"
    await keyboard.type("Eerste regel")
    await keyboard.press("Shift+Enter")
    await keyboard.type("tweede regel")
    await keyboard.press("Enter")
    await expect(visitor.lines("visitor").last).to_have_attribute("data-state", "sent")
    [message] = await meldpunt.wait_for_rows(1, Message, MESSAGES.c.direction == "in")
    assert message["text"] == "Eerste regel\ntweede regel"

    # Every control of the panel is on the Tab path, in reading order.
    assert await visitor.focused() == "textarea: Uw bericht"
    order = []
    for _ in range(5):
        await keyboard.press("Shift+Tab")
        order.append(await visitor.focused())
    assert order == [
        "button: Foto toevoegen",
        "summary: E-mail of telefoon achterlaten",
        "div: Gesprek",
        "button: Chat sluiten",
        "button: Chat met ons",
    ]
    for _ in range(5):
        await keyboard.press("Tab")
    assert await visitor.focused() == "textarea: Uw bericht"
    await keyboard.press("Tab")
    assert await visitor.focused() == "button: Verzenden"

    await keyboard.press("Escape")
    await expect(visitor.dialog).to_be_hidden()
    assert await visitor.focused() == "button: Chat met ons"
    await expect(visitor.launcher).to_have_attribute("aria-expanded", "false")


async def test_in_french_on_a_phone_inside_a_hostile_stylesheet(
    start_meldpunt: StartMeldpunt, new_visitor: NewVisitor
) -> None:
    meldpunt = await start_meldpunt(max_chars=100)
    visitor = await new_visitor(
        locale="fr-BE", viewport={"width": 375, "height": 700}, is_mobile=True, has_touch=True
    )
    visitor.strings = {
        "launcher": "Chattez avec nous",
        "dialog": "Chattez avec nous",
        "message": "Votre message",
        "send": "Envoyer",
    }
    # No data-lang on the tag: the browser's language decides.
    await visitor.visit(lang="none")
    # The town's CSS (yellow buttons, serif, 62.5 % root font) does not reach the widget.
    style = await visitor.launcher.evaluate(
        "b => [getComputedStyle(b).backgroundColor, getComputedStyle(b).fontFamily]"
    )
    assert style[0] == BLUE and "serif" not in style[1].replace("sans-serif", ""), style

    await visitor.launcher.tap()
    await expect(visitor.dialog).to_be_visible()
    box = await visitor.dialog.bounding_box()
    assert box == {"x": 0, "y": 0, "width": 375, "height": 700}

    await visitor.message_box.fill("x" * 95)
    await expect(visitor.dialog).to_contain_text("Encore 5 caractères")
    await visitor.message_box.fill("x" * 105)
    await expect(visitor.dialog).to_contain_text("5 caractères de trop")
    await visitor.message_box.press("Enter")
    await expect(visitor.dialog).to_contain_text("Votre message est trop long.")
    await expect(visitor.lines()).to_have_count(0)

    await visitor.write("Bonjour, où puis-je déposer mes encombrants ?")
    await expect(visitor.lines("visitor").last).to_contain_text("Envoyé")
    [ticket] = await meldpunt.wait_for_rows(1, Ticket)
    await expect(visitor.dialog).to_contain_text(f"Votre référence : {ticket['reference']}")
    await expect(visitor.dialog).to_contain_text("Vous êtes numéro 1 dans la file d'attente.")
    await visitor.dialog.get_by_role("button", name="Fermer le chat").tap()
    await expect(visitor.dialog).to_be_hidden()
