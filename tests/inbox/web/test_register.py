"""Registering a ticket by hand in the web inbox: a desk visit, a phone call, a field report.

The whole service in-process (``town`` from tests/inbox/web/conftest.py), on SQLite and
PostgreSQL: the form goes through the real intake, so routing (the sample config/routing.yaml),
deadlines and the acknowledgement are the ones every channel gets.
"""

from __future__ import annotations

import io
import re
import struct
import zlib
from html import unescape
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
from aiohttp import web

from inbox.web.words.register import WORDS
from meldpunt.app import RUNTIME, create_app
from store.models import AttachmentRow, Message, OutboxRow, Ticket, TicketEvent
from tests.conftest import Clock, rows
from tests.inbox.web.conftest import ClientFactory, Town, Visitor
from tests.service import sample_config

LAMP = "De straatlamp voor huisnummer 12 brandt al een week niet."


def png(width: int = 2, height: int = 2) -> bytes:
    """A small, real PNG (grey pixels)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def form_token(html: str) -> str:
    found = re.search(r'name="form_token" value="([^"]+)"', html)
    assert found, "no form token on the page"
    return found.group(1)


async def register(
    visitor: Visitor,
    fields: dict[str, str],
    *,
    files: tuple[tuple[str, bytes, str], ...] = (),
    confirm: bool = True,
    token: str | None = None,
) -> aiohttp.ClientResponse:
    """Open the form and send it with ``fields`` (and the files: name, bytes, type); with
    ``token``, as the form that had that token (sent once more)."""
    assert (await visitor.get("/tickets/new")).status == 200
    token = token or form_token(visitor.html)
    form = aiohttp.FormData()
    values = {"csrf": visitor.csrf(), "form_token": token, "confirm_shown": "1", **fields}
    if confirm:
        values["confirm"] = "1"
    for name, value in values.items():
        form.add_field(name, value)
    for filename, data, content_type in files:
        form.add_field("files", io.BytesIO(data), filename=filename, content_type=content_type)
    return await visitor.request("POST", "/tickets/new", data=form)


async def ticket(town: Town, reference: str) -> sa.RowMapping:
    [row] = await rows(town.db, Ticket, Ticket.reference == reference)  # type: ignore[arg-type]
    return row


async def acknowledgements(town: Town, ticket_id: int) -> list[sa.RowMapping]:
    return await rows(
        town.db,
        OutboxRow,
        OutboxRow.ticket_id == ticket_id,  # type: ignore[arg-type]
        OutboxRow.purpose == "acknowledgement",  # type: ignore[arg-type]
    )


async def events(town: Town, ticket_id: int, kind: str) -> list[sa.RowMapping]:
    return await rows(
        town.db,
        TicketEvent,
        TicketEvent.ticket_id == ticket_id,  # type: ignore[arg-type]
        TicketEvent.type == kind,  # type: ignore[arg-type]
    )


def reference_of(response: aiohttp.ClientResponse) -> str:
    found = re.fullmatch(r"/tickets/(1750-\d{6})", response.headers["Location"])
    assert found, response.headers["Location"]
    return found.group(1)


@pytest.mark.parametrize(
    ("fields", "channel", "acknowledged_to"),
    [
        pytest.param(
            {"way": "desk", "name": "Mie Claes", "email": "Mie.Claes@Example.be"},
            "desk",
            ("email", "mie.claes@example.be"),
            id="desk-visit",
        ),
        pytest.param(
            {"way": "phone", "name": "Jan Maes", "phone": "0470 12 34 56"},
            "voice",
            ("sms", "+32470123456"),
            id="phone-call",
        ),
        pytest.param(
            {"way": "field", "address": "Kerkstraat 12", "latitude": "51,0478"},
            "desk",
            None,
            id="field-observation",
        ),
    ],
)
async def test_each_way_makes_one_routed_ticket_with_deadlines_and_the_acknowledgement(
    town: Town,
    fields: dict[str, str],
    channel: str,
    acknowledged_to: tuple[str, str] | None,
) -> None:
    await town.add_user("els@wingene.example", "operator", (), name="Els Claes")
    staff = await town.signed_in("els@wingene.example")
    if fields["way"] == "field":
        fields = {**fields, "longitude": "3.2701"}
    response = await register(staff, {**fields, "language": "nl", "kind": "report", "text": LAMP})
    assert response.status == 303, staff.error()
    reference = reference_of(response)

    row = await ticket(town, reference)
    # The routing rule "straatverlichting" of config/routing.yaml, as for any channel.
    assert row["department"] == "technical-service"
    assert "straatverlichting" in row["tags"]
    assert row["origin_channel"] == channel
    assert row["kind"] == "report"
    assert row["first_answer_due"] is not None
    assert row["resolution_due"] is not None
    assert row["subject"] == LAMP  # no subject typed: the first line, as intake does it
    sent = await acknowledgements(town, row["id"])
    if acknowledged_to is None:
        assert sent == []
        assert row["reply_address"] is None
    else:
        assert [(a["channel"], a["recipient"]) for a in sent] == [acknowledged_to]
        assert reference in sent[0]["body"]
        assert (row["reply_channel"], row["reply_address"]) == acknowledged_to
    [registered] = await events(town, row["id"], "registered")
    assert registered["data"]["way"] == fields["way"]
    assert len(await rows(town.db, Ticket)) == 1

    # The ticket page: who registered it, and the number to give the citizen.
    assert (await staff.get(response.headers["Location"])).status == 200
    assert (
        staff.notice()
        == f"Ticket {reference} is geregistreerd. Geef de burger dit nummer: {reference}."
    )
    assert re.search(r"Met de hand geregistreerd\W.*Els Claes", staff.html)


async def test_a_field_observation_keeps_its_photo_and_location(town: Town) -> None:
    await town.add_user("wim@wingene.example", "agent", ("technical-service",), name="Wim Baert")
    warden = await town.signed_in("wim@wingene.example")
    photo = png(3, 2)
    response = await register(
        warden,
        {
            "way": "field",
            "language": "nl",
            "kind": "report",
            "subject": "Verzakt voetpad",
            "text": "Het voetpad is verzakt voor de school. Er ligt een losse tegel.",
            "address": "Schoolstraat 3, Wingene",
            "latitude": "51.05612",
            "longitude": "3.27455",
        },
        files=(("voetpad.png", photo, "image/png"),),
        confirm=False,
    )
    assert response.status == 303, warden.error()
    reference = reference_of(response)
    row = await ticket(town, reference)
    assert row["department"] == "technical-service"
    # The rule "foto-met-locatie" of config/routing.yaml saw both.
    assert "foto-locatie" in row["tags"]
    assert (row["location_lat"], row["location_lon"]) == (51.05612, 3.27455)
    assert row["location_address"] == "Schoolstraat 3, Wingene"
    [message] = await rows(town.db, Message, Message.ticket_id == row["id"])
    [attachment] = await rows(
        town.db,
        AttachmentRow,
        AttachmentRow.message_id == message["id"],
    )
    assert (attachment["filename"], attachment["content_type"]) == ("voetpad.png", "image/png")
    assert attachment["size"] == len(photo)
    assert await town.client.app[RUNTIME].files.get(attachment["sha256"]) == photo
    # No citizen: nobody to acknowledge, and nothing waits in the outbox.
    assert await acknowledgements(town, row["id"]) == []

    await warden.get(f"/tickets/{reference}")
    assert "voetpad.png" in warden.html
    assert "Schoolstraat 3, Wingene" in warden.html
    assert "51.056120, 3.274550" in warden.html


async def test_no_acknowledgement_when_staff_say_so_or_there_is_no_address(town: Town) -> None:
    staff = await town.signed_in("an@wingene.example")
    text = {"language": "nl", "kind": "question", "text": "Wanneer is het loket open?"}
    not_wanted = await register(
        staff, {"way": "desk", "email": "mie@example.be", **text}, confirm=False
    )
    nowhere = await register(staff, {"way": "desk", "name": "Een bezoeker", **text})
    for response in (not_wanted, nowhere):
        assert response.status == 303, staff.error()
        row = await ticket(town, reference_of(response))
        assert await acknowledgements(town, row["id"]) == []
        assert await rows(town.db, OutboxRow, OutboxRow.ticket_id == row["id"]) == []
        [registered] = await events(town, row["id"], "registered")
        assert registered["data"]["acknowledgement"] is False
    # Asked for and an address given: it is queued, in the citizen's language.
    wanted = await register(
        staff, {"way": "desk", "email": "mie@example.be", **text, "language": "fr"}
    )
    row = await ticket(town, reference_of(wanted))
    [ack] = await acknowledgements(town, row["id"])
    assert ack["recipient"] == "mie@example.be"
    assert row["language"] == "fr"


async def test_a_double_submit_makes_one_ticket(town: Town) -> None:
    staff = await town.signed_in("an@wingene.example")
    await staff.get("/tickets/new")
    token = form_token(staff.html)
    fields = {"way": "desk", "name": "Mie Claes", "email": "mie@example.be", "language": "nl",
              "kind": "question", "text": "Hoe vraag ik een parkeerkaart aan?"}  # fmt: skip
    first = await register(staff, fields, token=token)
    second = await register(staff, fields, token=token)
    assert first.status == second.status == 303
    assert first.headers["Location"] == second.headers["Location"]
    [row] = await rows(town.db, Ticket)
    assert len(await acknowledgements(town, row["id"])) == 1
    assert len(await events(town, row["id"], "registered")) == 1
    # A new form is a new ticket.
    assert (await register(staff, fields)).status == 303
    assert len(await rows(town.db, Ticket)) == 2


async def test_mistakes_show_the_form_again_with_everything_typed(town: Town) -> None:
    staff = await town.signed_in("an@wingene.example")
    response = await register(
        staff,
        {
            "way": "phone",
            "name": "Jan <b>Maes</b>",
            "email": "jan@@example",
            "phone": "12",
            "language": "en",
            "kind": "complaint",
            "subject": "Te laat",
            "text": "",
            "address": "Markt 1",
            "latitude": "51.0",
            "longitude": "",
        },
        files=(("foto.png", png(), "image/png"),),
    )
    assert response.status == 422
    html = unescape(staff.html)
    error = unescape(staff.error() or "")
    assert "nog niet geregistreerd" in error
    assert "Kies ook de foto's en bestanden opnieuw" in error
    for problem in (
        "Dit e-mailadres klopt niet.",
        "Dit telefoonnummer klopt niet.",
        "Schrijf wat er aan de hand is.",
        "Vul breedte- en lengtegraad allebei in",
    ):
        assert problem in html
    assert 'value="Jan &lt;b&gt;Maes&lt;/b&gt;"' in staff.html
    assert 'value="jan@@example"' in html
    assert 'value="12"' in html
    assert 'value="Te laat"' in html
    assert 'value="Markt 1"' in html
    assert 'value="51.0"' in html
    assert 'id="way-phone" name="way" value="phone" checked' in html
    assert '<option value="en" lang="en" selected>' in html
    assert '<option value="complaint" selected>' in html
    assert (
        'id="email" name="email" type="email" autocomplete="off" value="jan@@example" '
        'aria-invalid="true" aria-describedby="email-fout"' in html
    )
    assert await rows(town.db, Ticket) == []

    # Without any citizen at the desk the form asks who it was; a typed text stays.
    response = await register(
        staff, {"way": "desk", "language": "nl", "kind": "report", "text": "Losse tegel."},
        confirm=False,
    )  # fmt: skip
    assert response.status == 422
    assert "Vul een naam, een e-mailadres of een telefoonnummer in." in staff.html
    assert ">Losse tegel.</textarea>" in staff.html
    assert 'id="confirm" name="confirm" value="1" aria-describedby' in staff.html  # unchecked
    assert "Kies ook de foto" not in (staff.error() or "")
    assert await rows(town.db, Ticket) == []


async def test_the_form_needs_a_session_and_its_csrf_token(town: Town) -> None:
    stranger = town.visitor()
    response = await stranger.get("/tickets/new")
    assert response.status == 303
    assert response.headers["Location"].startswith("/login?next=")
    fields = {"way": "desk", "name": "Mie", "language": "nl", "kind": "report", "text": LAMP}
    assert (await stranger.post("/tickets/new", fields)).status == 403

    staff = await town.signed_in("an@wingene.example")
    await staff.get("/tickets/new")
    token = form_token(staff.html)
    response = await staff.post("/tickets/new", {**fields, "form_token": token})
    assert response.status == 403
    response = await staff.post(
        "/tickets/new", {**fields, "form_token": token, "csrf": "not-the-token"}
    )
    assert response.status == 403
    assert await rows(town.db, Ticket) == []


async def test_an_agent_whose_registration_went_elsewhere_is_told_its_number(town: Town) -> None:
    staff = await town.signed_in("an@wingene.example")  # front desk only
    response = await register(
        staff,
        {"way": "desk", "name": "Mie Claes", "email": "mie@example.be", "language": "nl",
         "kind": "report", "text": "De vuilniszakken in de Kerkstraat zijn niet opgehaald."},
    )  # fmt: skip
    assert response.status == 303
    location = response.headers["Location"]
    assert location == "/tickets/new"
    assert (await staff.get(location)).status == 200
    notice = staff.notice()
    assert notice is not None
    reference = notice.rpartition(" ")[2].rstrip(".")
    assert re.fullmatch(r"1750-\d{6}", reference), notice
    assert notice == (
        f"Ticket {reference} is geregistreerd en ging naar Milieu en afval. U kunt het zelf "
        f"niet openen. Geef de burger dit nummer: {reference}."
    )
    assert (await ticket(town, reference))["department"] == "environment"
    # A fresh form for the next visitor, and the notice is said once.
    assert 'value="Mie Claes"' not in staff.html
    await staff.get(location)
    assert staff.notice() is None
    # The ticket itself stays out of reach, as any ticket of another department.
    assert (await staff.get(f"/tickets/{reference}")).status == 404

    # Something for the front desk itself: straight to its page.
    response = await register(
        staff,
        {"way": "phone", "name": "Jan Maes", "language": "nl", "kind": "question",
         "text": "Mag ik de zaal van het cultuurcentrum huren voor een feest?"},
    )  # fmt: skip
    reference = reference_of(response)
    assert (await ticket(town, reference))["department"] == "front-desk"
    assert (await staff.get(f"/tickets/{reference}")).status == 200
    assert staff.notice() == (
        f"Ticket {reference} is geregistreerd. Geef de burger dit nummer: {reference}."
    )
    # Shown once; who registered it stays on the page.
    await staff.get(f"/tickets/{reference}")
    assert staff.notice() is None
    assert "Met de hand geregistreerd door An Peeters: Telefoongesprek." in staff.html


# Files too big


@pytest.fixture
async def small_files(
    aiohttp_client: ClientFactory,
    tmp_path: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    clock: Clock,
) -> Town:
    """The service with 20 kB per file in the inbox, and the smallest request body (2 MB)."""
    config = sample_config(
        tmp_path,
        database_url,
        monkeypatch,
        replace={
            "max_attachment_bytes: 15728640": "max_attachment_bytes: 20000",
            "max_attachment_bytes: 10485760": "max_attachment_bytes: 100000",
        },
    )
    app: web.Application = create_app(config, migrate=True, clock=clock)
    client = await aiohttp_client(app, cookie_jar=aiohttp.DummyCookieJar())
    town = Town(client, clock)
    await town.add_user("an@wingene.example", name="An Peeters")
    return town


async def test_a_file_too_big_is_refused_with_the_form_kept(small_files: Town) -> None:
    staff = await small_files.signed_in("an@wingene.example")
    fields: dict[str, Any] = {
        "way": "field", "language": "nl", "kind": "report", "text": "Graffiti op de brug.",
        "address": "Brugstraat",
    }  # fmt: skip
    big = png() + b"\x00" * 30_000
    response = await register(
        staff, fields, files=(("brug.png", png(), "image/png"), ("groot.png", big, "image/png"))
    )
    assert response.status == 422
    assert "Het bestand 'groot.png' is te groot. Een bestand mag hoogstens 19,5 kB zijn." in (
        unescape(staff.html)
    )
    assert ">Graffiti op de brug.</textarea>" in staff.html
    assert await rows(small_files.db, Ticket) == []
    # More than the service reads in one request: the form, empty, with the reason.
    huge = b"\x00" * (3 * 1024 * 1024)
    response = await register(staff, fields, files=(("film.mp4", huge, "video/mp4"),))
    assert response.status == 413
    assert unescape(staff.error() or "") == (
        "De bestanden waren samen te groot. Er is niets bewaard. Vul het formulier opnieuw "
        "in, met minder of kleinere foto's."
    )
    assert 'name="form_token"' in staff.html
    assert await rows(small_files.db, Ticket) == []


def test_every_word_of_the_form_is_there_in_dutch_french_and_english() -> None:
    assert set(WORDS["fr"]) == set(WORDS["nl"]) == set(WORDS["en"])


async def test_the_form_speaks_the_staff_members_language(town: Town) -> None:
    staff = await town.signed_in("an@wingene.example")
    await staff.get("/tickets/new?lang=fr")
    assert "<h1>Enregistrer un ticket</h1>" in staff.html
    assert "Vu sur le terrain" in staff.html
    # The citizen's language is a choice of its own: the town's by default.
    assert '<option value="nl" lang="nl" selected>Nederlands</option>' in staff.html
    response = await register(staff, {"way": "field", "language": "nl", "kind": "report"})
    assert response.status == 422
    assert "Écrivez de quoi il s&#39;agit." in staff.html
