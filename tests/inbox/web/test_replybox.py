"""The reply box on the ticket page: answers on a channel of the citizen, notes, canned answers,
resolving with an answer, the SMS counter and the closed-window warning.

The whole service in-process on SQLite and PostgreSQL, with SMS and WhatsApp through a local fake
of Twilio (tests/connectors/twilio/conftest.py), so a second channel of the citizen can be offered.
Answers queued by staff stay in the outbox: the hand-moved clock stands before their send time.
"""

from __future__ import annotations

import dataclasses
import html
import re
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from sqlmodel import col

from ingest.model import Channel, ContactRef, Identity, IdentityKind
from meldpunt.app import RUNTIME, create_app
from store.models import AttachmentRow, Message, OutboxRow, Ticket
from tests.conftest import Clock, rows
from tests.connectors.twilio.conftest import (  # noqa: F401 - the fixture, for this module
    ACCOUNT_SID,
    AUTH_TOKEN,
    FakeTwilio,
    fake_twilio,
)
from tests.inbox.web.conftest import ClientFactory, Town, Visitor
from tests.messages import inbound
from tests.service import sample_config

PHONE = "+32470123456"
# Small, so a file over the limit costs the test nothing.
MAX_FILE = 2048


@pytest.fixture
async def town(
    aiohttp_client: ClientFactory,
    tmp_path: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    clock: Clock,
    fake_twilio: FakeTwilio,  # noqa: F811
) -> Town:
    """The sample town with Twilio sending SMS and WhatsApp, and An, an operator."""
    for name, value in {
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_API_BASE": fake_twilio.base,
        "TWILIO_SMS_NUMBER": "+3250111111",
        "TWILIO_WHATSAPP_SENDER": "+3250222222",
        "TWILIO_WHATSAPP_TEMPLATE_SID": "HX0123456789abcdef0123456789abcdef",
    }.items():
        monkeypatch.setenv(name, value)
    config = sample_config(
        tmp_path,
        database_url,
        monkeypatch,
        replace={"max_attachment_bytes: 15728640": f"max_attachment_bytes: {MAX_FILE}"},
    )
    client = await aiohttp_client(
        create_app(config, migrate=True, clock=clock), cookie_jar=aiohttp.DummyCookieJar()
    )
    town = Town(client, clock)
    # An operator: the tests are about the box, whichever department routing picks.
    await town.add_user("an@wingene.example", "operator", (), name="An Peeters")
    return town


async def citizen_writes(
    town: Town,
    text: str,
    *,
    channel: Channel = Channel.WEBFORM,
    email: str | None = "mie@example.be",
    phone: str | None = None,
    telegram: str | None = None,
    name: str = "Mie Janssens",
    hours_ago: float = 0,
    language: str | None = None,
) -> str:
    message = dataclasses.replace(
        inbound(
            text,
            channel=channel,
            email=email,
            phone=phone,
            subject="Vraag" if channel in (Channel.WEBFORM, Channel.EMAIL) else None,
            received_at=town.clock.now - timedelta(hours=hours_ago),
        ),
        language=language,
    )
    identities = [Identity(IdentityKind.EMAIL, email)] if email else []
    identities += [Identity(IdentityKind.PHONE, phone)] if phone else []
    identities += [Identity(IdentityKind.TELEGRAM, telegram)] if telegram else []
    message = dataclasses.replace(message, sender=ContactRef(tuple(identities), display_name=name))
    result = await town.client.app[RUNTIME].intake.submit(message)
    assert result.ticket_reference is not None
    return result.ticket_reference


async def answers_of(town: Town, reference: str) -> list[dict[str, object]]:
    """The ticket's outbox rows for staff answers (not the acknowledgement)."""
    [ticket] = await rows(town.db, Ticket, col(Ticket.reference) == reference)
    return [
        dict(r)
        for r in await rows(town.db, OutboxRow, col(OutboxRow.ticket_id) == ticket["id"])
        if r["purpose"] == "reply"
    ]


async def reply(staff: Visitor, reference: str, **fields: str) -> aiohttp.ClientResponse:
    await staff.get(f"/tickets/{reference}")
    return await staff.post(f"/tickets/{reference}/reply", {"csrf": staff.csrf(), **fields})


def textarea(page: str, name: str) -> str:
    found = re.search(rf'<textarea[^>]*name="{name}"[^>]*>(.*?)</textarea>', page, re.S)
    assert found, f"no textarea {name}"
    return html.unescape(found.group(1))


def channel_choice(page: str, channel: str) -> str:
    found = re.search(rf'<input type="radio" name="channel"[^>]*value="{channel}"[^>]*>', page)
    assert found, f"no choice {channel}"
    return found.group(0)


async def test_an_answer_goes_out_on_the_tickets_own_channel_and_address(town: Town) -> None:
    reference = await citizen_writes(town, "Wanneer is het containerpark open?")
    staff = await town.signed_in("an@wingene.example")
    await staff.get(f"/tickets/{reference}")
    # The web form's answers go by e-mail, to the address the citizen gave; that is chosen.
    assert "checked" in channel_choice(staff.html, "email")
    response = await reply(
        staff, reference, channel="email", text="Het containerpark is open van 9 tot 17 uur."
    )
    assert response.status == 303
    assert response.headers["Location"] == f"/tickets/{reference}"
    [answer] = await answers_of(town, reference)
    assert answer["channel"] == "email"
    assert answer["recipient"] == "mie@example.be"
    assert answer["body"] == "Het containerpark is open van 9 tot 17 uur."
    # Back on the ticket (a GET), with a notice, and the answer in the conversation.
    assert (await staff.get(response.headers["Location"])).status == 200
    assert staff.notice() == "Uw antwoord staat klaar om te versturen."
    assert "Het containerpark is open van 9 tot 17 uur." in staff.html
    [ticket] = await rows(town.db, Ticket, col(Ticket.reference) == reference)
    assert ticket["status"] == "open"


async def test_an_answer_can_go_on_another_channel_of_the_same_citizen(town: Town) -> None:
    reference = await citizen_writes(town, "Mijn vraag over de kermis.", phone=PHONE)
    staff = await town.signed_in("an@wingene.example")
    await staff.get(f"/tickets/{reference}")
    # The phone number makes SMS and WhatsApp possible, and Twilio sends both.
    assert "disabled" not in channel_choice(staff.html, "sms")
    assert "disabled" not in channel_choice(staff.html, "whatsapp")
    assert f"sms — {PHONE}" in staff.html
    response = await reply(staff, reference, channel="sms", text="De kermis begint zaterdag.")
    assert response.status == 303
    [answer] = await answers_of(town, reference)
    assert (answer["channel"], answer["recipient"]) == ("sms", PHONE)


async def test_a_channel_the_citizen_cannot_be_reached_on_is_refused(town: Town) -> None:
    reference = await citizen_writes(town, "Is de bib open op maandag?", telegram="5550001")
    staff = await town.signed_in("an@wingene.example")
    await staff.get(f"/tickets/{reference}")
    page = re.sub(r"\s+", " ", staff.html)
    # No phone number: no SMS. A Telegram chat, but no Telegram bot here: shown, not offered.
    assert 'value="sms"' not in page
    assert "disabled" in channel_choice(page, "telegram")
    assert "Telegram — 5550001 — geen verbinding ingesteld voor dit kanaal" in page
    # The ticket's own channel is offered all the same, saying its answers wait for now.
    assert "disabled" not in channel_choice(page, "email")
    assert "Er is nog geen verbinding voor dit kanaal. Het antwoord wacht in de outbox" in page
    for channel in ("sms", "telegram", "voice", "fax"):
        response = await reply(staff, reference, channel=channel, text="Ja, van 14 tot 20 uur.")
        assert response.status == 422
        assert staff.error() == (
            "Via dat kanaal kunnen we deze burger niet bereiken. Kies een ander kanaal."
        )
        assert textarea(staff.html, "text") == "Ja, van 14 tot 20 uur."
    assert await answers_of(town, reference) == []


async def test_a_note_stays_internal_and_is_never_queued(town: Town) -> None:
    reference = await citizen_writes(town, "Er ligt glas op het fietspad.")
    staff = await town.signed_in("an@wingene.example")
    await staff.get(f"/tickets/{reference}")
    assert "Notitie — intern: de burger ziet dit nooit" in staff.html
    outbox_before = await rows(town.db, OutboxRow)
    response = await staff.post(
        f"/tickets/{reference}/note",
        {"csrf": staff.csrf(), "note": "Technische dienst gebeld, ze vegen morgen."},
    )
    assert response.status == 303
    assert await rows(town.db, OutboxRow) == outbox_before
    [note] = await rows(town.db, Message, col(Message.direction) == "note")
    assert note["text"] == "Technische dienst gebeld, ze vegen morgen."
    await staff.get(response.headers["Location"])
    assert staff.notice() == "De interne notitie is bewaard. De burger ziet ze niet."
    shown = re.search(r'<li class="message note"[^>]*>(.*?)</li>', staff.html, re.S)
    assert shown and "Technische dienst gebeld, ze vegen morgen." in shown.group(1)
    assert "Interne notitie" in shown.group(1)


async def test_resolving_with_an_answer_sends_the_resolved_notice_in_one_step(
    town: Town,
) -> None:
    reference = await citizen_writes(town, "De put in de Stationsstraat is verzakt.")
    staff = await town.signed_in("an@wingene.example")
    response = await reply(
        staff, reference, channel="email", text="De put is hersteld.", resolve="1"
    )
    assert response.status == 303
    [ticket] = await rows(town.db, Ticket, col(Ticket.reference) == reference)
    assert ticket["status"] == "resolved"
    [answer] = await answers_of(town, reference)
    # The town's "it's done" notice, with the answer in it.
    assert "De put is hersteld." in str(answer["body"])
    assert f"Uw melding {reference} is nu behandeld." in str(answer["body"])
    assert answer["subject"] == f"Uw melding is behandeld [{reference}]"
    await staff.get(response.headers["Location"])
    assert staff.notice() is not None and "afgehandeld" in staff.notice()  # type: ignore[operator]
    # Resolved: nothing more to resolve with the next answer.
    assert 'name="resolve"' not in staff.html


async def test_without_the_forms_csrf_token_nothing_is_sent(town: Town) -> None:
    reference = await citizen_writes(town, "Wanneer wordt de straat geveegd?")
    staff = await town.signed_in("an@wingene.example")
    for fields in ({}, {"csrf": "not-the-token"}):
        response = await staff.post(
            f"/tickets/{reference}/reply", {"text": "Volgende week.", "channel": "email", **fields}
        )
        assert response.status == 403
        response = await staff.post(f"/tickets/{reference}/note", {"note": "x", **fields})
        assert response.status == 403
        response = await staff.post("/inbox/sms-parts", {"text": "x", **fields})
        assert response.status == 403
    assert await answers_of(town, reference) == []
    assert await rows(town.db, Message, col(Message.direction) == "note") == []


async def test_files_go_with_the_answer_and_one_too_big_keeps_the_text(town: Town) -> None:
    reference = await citizen_writes(town, "Mag ik een bouwaanvraag indienen?")
    staff = await town.signed_in("an@wingene.example")
    await staff.get(f"/tickets/{reference}")
    assert "elk tot 2 kB" in staff.html or f"{MAX_FILE}" in staff.html

    def form(files: list[tuple[str, bytes]]) -> aiohttp.FormData:
        data = aiohttp.FormData()
        data.add_field("csrf", staff.csrf())
        data.add_field("channel", "email")
        data.add_field("text", "Hierbij het formulier.\nVul het in aub.")
        for name, content in files:
            data.add_field("files", content, filename=name, content_type="application/pdf")
        return data

    response = await staff.request(
        "POST",
        f"/tickets/{reference}/reply",
        data=form([("klein.pdf", b"%PDF ok"), ("groot.pdf", b"x" * (MAX_FILE + 1))]),
    )
    assert response.status == 422
    error = staff.error()
    assert error is not None and "groot.pdf" in error and "te groot" in error
    assert textarea(staff.html, "text") == "Hierbij het formulier.\nVul het in aub."
    assert await answers_of(town, reference) == []

    await staff.get(f"/tickets/{reference}")
    response = await staff.request(
        "POST",
        f"/tickets/{reference}/reply",
        data=form([("formulier.pdf", b"%PDF-1.4 formulier"), ("plan.pdf", b"%PDF plan")]),
    )
    assert response.status == 303
    [answer] = await answers_of(town, reference)
    files = await rows(
        town.db, AttachmentRow, col(AttachmentRow.message_id) == answer["message_id"]
    )
    assert [(f["filename"], f["size"]) for f in files] == [("formulier.pdf", 18), ("plan.pdf", 9)]


async def test_a_canned_answer_is_filled_in_for_the_ticket(town: Town) -> None:
    await town.add_user("jef@wingene.example", "operator", (), name="Jef Claes")
    reference = await citizen_writes(town, "Mijn vuilniszak is niet opgehaald.")
    staff = await town.signed_in("jef@wingene.example")
    await staff.get(f"/tickets/{reference}")
    # Every answer of config/answers.yaml is offered, by its title.
    assert ">In behandeling</option>" in staff.html
    assert ">Afval niet opgehaald</option>" in staff.html
    # Without JavaScript: the "fill in" form asks the page again with ?answer=.
    response = await staff.get(f"/tickets/{reference}/reply?answer=ontvangen-in-behandeling")
    assert response.status == 200
    text = textarea(staff.html, "text")
    assert text.startswith("Beste Mie Janssens,\n")
    assert f"Uw nummer is {reference}." in text
    assert "Met vriendelijke groeten,\nJef Claes\nGemeente Wingene" in text
    [ticket] = await rows(town.db, Ticket, col(Ticket.reference) == reference)
    department = {"front-desk": "Onthaal", "environment": "Milieu en afval"}[ticket["department"]]
    assert f"De dienst {department} bekijkt het nu." in text
    assert "{" not in text
    # The same text is on the option, for the script to fill in without a reload.
    assert 'data-text="Beste Mie Janssens,' in staff.html
    # An unknown answer fills in nothing.
    await staff.get(f"/tickets/{reference}/reply?answer=bestaat-niet")
    assert textarea(staff.html, "text") == ""


async def test_a_canned_answer_comes_in_the_tickets_language(town: Town) -> None:
    reference = await citizen_writes(
        town, "Bonjour, quand passe le camion des poubelles ?", name="", language="fr"
    )
    staff = await town.signed_in("an@wingene.example")
    await staff.get(f"/tickets/{reference}/reply?answer=meer-info-nodig")
    text = textarea(staff.html, "text")
    # No name known: a polite form of address in French, and the staff's UI stays Dutch.
    assert text.startswith("Bonjour Madame, Monsieur,\n")
    assert ">Meer informatie nodig</option>" in staff.html


async def test_the_sms_counter_is_computed_by_the_server(town: Town) -> None:
    reference = await citizen_writes(
        town, "Mijn straatlicht is kapot.", channel=Channel.SMS, email=None, phone=PHONE
    )
    staff = await town.signed_in("an@wingene.example")
    await staff.get(f"/tickets/{reference}")
    # An SMS ticket: the counter shows, for the empty box, with the server's numbers.
    assert 'id="replybox-count"' in staff.html
    assert "0 tekens · 1 sms" in staff.html
    await staff.get(f"/tickets/{reference}")
    csrf = staff.csrf()
    for text, characters, parts in (("a" * 160, 160, 1), ("a" * 161, 161, 2), ("ë" * 71, 71, 2)):
        response = await staff.post("/inbox/sms-parts", {"csrf": csrf, "text": text})
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("application/json")
        assert await response.json() == {"characters": characters, "parts": parts}
    # A text kept after an error is counted on the page itself.
    response = await reply(staff, reference, channel="telegram", text="b" * 200)
    assert response.status == 422
    assert "200 tekens · 2 sms" in staff.html


async def test_a_closed_whatsapp_window_is_explained_before_sending(town: Town) -> None:
    late = await citizen_writes(
        town,
        "Hallo, de speeltuin is stuk.",
        channel=Channel.WHATSAPP,
        email=None,
        phone=PHONE,
        hours_ago=25,
    )
    staff = await town.signed_in("an@wingene.example")
    await staff.get(f"/tickets/{late}")
    page = re.sub(r"\s+", " ", staff.html)
    assert "Let op: WhatsApp laat geen vrij antwoord meer toe." in page
    # 25 hours before Monday 16 November 10:00 UTC, in the town's time.
    assert "De burger schreef het laatst via WhatsApp op 15-11-2026 10:00." in page
    # What happens instead: the approved template, then the answer by SMS to the same number.
    assert "De burger krijgt eerst een vast WhatsApp-bericht" in page
    assert f"Uw antwoord gaat daarom via sms naar {PHONE}." in page
    # The warning belongs to the WhatsApp choice.
    assert 'aria-describedby="replybox-about-whatsapp"' in channel_choice(staff.html, "whatsapp")

    # Within the 24 hours there is nothing to warn about.
    town.clock.now += timedelta(hours=1)
    await citizen_writes(
        town, "Nog een foto.", channel=Channel.WHATSAPP, email=None, phone=PHONE, hours_ago=0
    )
    await staff.get(f"/tickets/{late}")
    assert "laat geen vrij antwoord meer toe" not in staff.html


async def test_another_departments_ticket_cannot_be_answered(town: Town) -> None:
    reference = await citizen_writes(town, "De straatlamp in de Kerkstraat brandt niet.")
    [ticket] = await rows(town.db, Ticket, col(Ticket.reference) == reference)
    assert ticket["department"] == "technical-service"
    await town.add_user("balie@wingene.example", "agent", ("front-desk",))
    staff = await town.signed_in("balie@wingene.example")
    csrf = staff.csrf()
    response = await staff.post(
        f"/tickets/{reference}/reply", {"csrf": csrf, "text": "Hallo", "channel": "email"}
    )
    assert response.status == 404
    response = await staff.post(f"/tickets/{reference}/note", {"csrf": csrf, "note": "Hallo"})
    assert response.status == 404
    assert (await staff.get(f"/tickets/{reference}/reply?answer=afval-gemist")).status == 404
    assert await answers_of(town, reference) == []
