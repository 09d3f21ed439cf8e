"""The widget's side of the protocol against a scripted server (``FakeChat``): the turns the
real service takes only when something goes wrong (intake down, too many messages, a frame that
arrives twice, the chat closing while a visitor types).
"""

from __future__ import annotations

from typing import Any

from playwright.async_api import expect

from tests.connectors.webchat.browser.conftest import (
    FAKE_TOKEN,
    PNG,
    FakeChat,
    NewVisitor,
    Visitor,
)

STAFF: dict[str, Any] = {
    "type": "message",
    "id": "out-7",
    "from": "staff",
    "text": "Goedemorgen, waarmee kan ik helpen?",
    "at": "2026-11-16T10:01:00Z",
    "attachments": [],
    "client_id": None,
}


async def open_chat(visitor: Visitor, fake: FakeChat, **query: str) -> None:
    await visitor.visit(**query)
    await visitor.open()
    await fake.wait_for(1, "hello")
    await expect(visitor.dialog).not_to_contain_text("Verbinden…")


async def test_frames_the_widget_sends_and_how_it_shows_what_comes_back(
    fake_chat: FakeChat, visitor: Visitor
) -> None:
    await open_chat(visitor, fake_chat)
    [hello] = fake_chat.sent("hello")
    assert hello == {"type": "hello", "visitor": None, "lang": "nl"}

    await visitor.write("  Hallo, is het stadhuis vandaag open?  ")
    [message] = await fake_chat.wait_for(1, "message")
    assert message["text"] == "Hallo, is het stadhuis vandaag open?"
    assert len(message["client_id"]) == 36
    await expect(visitor.lines("visitor").last).to_have_attribute("data-state", "sent")
    await expect(visitor.dialog).to_contain_text("Uw referentie: 1750-000042")

    await fake_chat.push({"type": "queue", "position": 3})
    await expect(visitor.dialog).to_contain_text("U bent nummer 3 in de wachtrij.")
    # The same staff message twice (a resend after a reconnect): shown once.
    await fake_chat.push(STAFF)
    await fake_chat.push(STAFF)
    await fake_chat.push({"type": "queue", "position": None})
    await expect(visitor.dialog.get_by_text("wachtrij")).to_have_count(0)
    await expect(visitor.lines("staff")).to_have_count(1)
    await expect(visitor.lines("staff")).to_contain_text(["Goedemorgen, waarmee kan ik helpen?"])

    # The token from welcome is kept and sent again by the next page.
    stored = await visitor.page.evaluate("localStorage.getItem('meldpunt-chat-visitor')")
    assert stored == FAKE_TOKEN
    await visitor.page.reload()
    [_, again] = await fake_chat.wait_for(2, "hello")
    assert again["visitor"] == FAKE_TOKEN


async def test_while_intake_is_down_a_message_waits_and_goes_again_with_the_same_client_id(
    fake_chat: FakeChat, visitor: Visitor
) -> None:
    def down_once(frame: dict[str, Any]) -> list[dict[str, Any]]:
        if frame["type"] == "message" and len(fake_chat.sent("message")) == 1:
            return [{"type": "error", "client_id": frame["client_id"], "code": "unavailable"}]
        return fake_chat.as_meldpunt(frame)

    fake_chat.respond = down_once
    await open_chat(visitor, fake_chat)
    await visitor.write("Mijn fiets is gestolen.")
    line = visitor.lines("visitor").last
    await expect(line).to_contain_text("Dit lukt nu even niet. We proberen het straks opnieuw.")
    await expect(line).to_have_attribute("data-state", "pending")
    first, second = await fake_chat.wait_for(2, "message")
    assert first == second
    await expect(line).to_have_attribute("data-state", "sent")
    await expect(line).not_to_contain_text("Dit lukt nu even niet")


async def test_a_rate_limited_message_can_be_tried_again(
    fake_chat: FakeChat, visitor: Visitor
) -> None:
    def limited_once(frame: dict[str, Any]) -> list[dict[str, Any]]:
        if frame["type"] == "message" and len(fake_chat.sent("message")) == 1:
            return [{"type": "error", "client_id": frame["client_id"], "code": "rate_limited"}]
        return fake_chat.as_meldpunt(frame)

    fake_chat.respond = limited_once
    await open_chat(visitor, fake_chat)
    await visitor.write("Nog een vraag.")
    line = visitor.lines("visitor").last
    await expect(line).to_have_attribute("data-state", "failed")
    await expect(line.get_by_role("alert")).to_contain_text(
        "U stuurt te veel berichten kort na elkaar."
    )
    await line.get_by_role("button", name="Opnieuw proberen").click()
    first, second = await fake_chat.wait_for(2, "message")
    assert first["client_id"] == second["client_id"]
    await expect(line).to_have_attribute("data-state", "sent")


async def test_the_chat_closes_while_the_visitor_types_in_english(
    fake_chat: FakeChat, new_visitor: NewVisitor
) -> None:
    visitor = await new_visitor()
    visitor.strings = {
        "launcher": "Chat with us",
        "dialog": "Chat with us",
        "message": "Your message",
    }
    await open_chat(visitor, fake_chat, lang="en")
    await expect(visitor.message_box).to_be_focused()

    # 07:30 UTC is 08:30 in Brussels in November.
    await fake_chat.push({"type": "hours", "open": False, "next_open": "2026-11-30T07:30:00Z"})
    await expect(visitor.dialog).to_contain_text(
        "The chat is closed now. We are back on Monday 30 November at 08:30."
    )
    form = visitor.dialog.get_by_role("region", name="The chat is closed now", exact=False)
    text = form.get_by_role("textbox", name="Your message")
    phone = form.get_by_role("textbox", name="Phone number")
    await expect(text).to_be_focused()

    # The server refuses a number the browser let through: the form comes back as it was.
    def refuse_phone(frame: dict[str, Any]) -> list[dict[str, Any]]:
        if frame["type"] == "offline_message" and frame["phone"] == "0000 00 00 00":
            return [{"type": "error", "client_id": frame["client_id"], "code": "invalid_phone"}]
        return fake_chat.as_meldpunt(frame)

    fake_chat.respond = refuse_phone
    await text.fill("Please call me back about my parking permit.")
    await phone.fill("0000 00 00 00")
    await form.get_by_role("button", name="Send message").click()
    [refused] = await fake_chat.wait_for(1, "offline_message")
    assert refused["email"] is None and refused["text"].startswith("Please call me back")
    await expect(form).to_contain_text("This phone number is not correct.")
    await expect(phone).to_have_attribute("aria-invalid", "true")
    await expect(text).to_have_value("Please call me back about my parking permit.")
    await expect(visitor.lines("visitor")).to_have_count(0)

    await phone.fill("0470 12 34 56")
    await form.get_by_role("button", name="Send message").click()
    await expect(visitor.dialog).to_contain_text(
        "Thank you. We have received your message. Your reference: 1750-000042."
    )
    [_, sent] = await fake_chat.wait_for(2, "offline_message")
    assert sent["phone"] == "0470 12 34 56" and sent["client_id"] != refused["client_id"]

    await fake_chat.push({"type": "hours", "open": True, "next_open": None})
    await expect(visitor.message_box).to_be_visible()
    await expect(form).to_be_hidden()


async def test_an_uploaded_photo_is_shown_from_meldpunt_with_the_visitor_token(
    fake_chat: FakeChat, visitor: Visitor
) -> None:
    await open_chat(visitor, fake_chat)
    async with visitor.page.expect_file_chooser() as chooser:
        await visitor.dialog.get_by_role("button", name="Foto toevoegen").click()
    await (await chooser.value).set_files(
        {"name": "put.png", "mimeType": "image/png", "buffer": PNG}
    )
    photo = visitor.lines("visitor").get_by_role("img", name="Foto: put.png")
    await expect(photo).to_have_attribute(
        "src", f"{fake_chat.base}/chat/files/9?visitor={FAKE_TOKEN}"
    )
    await expect(visitor.lines("visitor").last).to_have_attribute("data-state", "sent")
    [upload] = fake_chat.uploads
    assert upload["visitor"] == FAKE_TOKEN and upload["lang"] == "nl"
    assert upload["file"] == "put.png" and len(upload["client_id"]) == 36


async def test_an_address_that_belongs_to_someone_else_is_still_confirmed_as_noted(
    fake_chat: FakeChat, visitor: Visitor
) -> None:
    # meldpunt records it with the chat but cannot answer by it: both false.
    def not_theirs(frame: dict[str, Any]) -> list[dict[str, Any]]:
        if frame["type"] == "contact":
            return [{"type": "contact_saved", "email": False, "phone": False}]
        return fake_chat.as_meldpunt(frame)

    fake_chat.respond = not_theirs
    await open_chat(visitor, fake_chat)
    await visitor.dialog.get_by_text("E-mail of telefoon achterlaten").click()
    await visitor.dialog.get_by_role("textbox", name="E-mailadres").fill("an@wingene.example")
    await visitor.dialog.get_by_role("button", name="Bewaren").click()
    [contact] = await fake_chat.wait_for(1, "contact")
    assert contact == {"type": "contact", "email": "an@wingene.example", "phone": None}
    await expect(visitor.dialog).to_contain_text("Bedankt. We hebben uw gegevens genoteerd.")
    await expect(visitor.dialog.get_by_role("button", name="Bewaren")).to_be_hidden()
