"""The citizen web form, through real HTTP: valid, invalid, oversize, CSRF, spam, JSON twin."""

from __future__ import annotations

import io
import re

import aiohttp
import sqlalchemy as sa
from aiohttp.test_utils import TestClient

from meldpunt.app import RUNTIME
from store.models import AttachmentRow, OutboxRow, Ticket

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 2000
HIDDEN = re.compile(r'name="(csrf_token|submission_id)" value="([^"]*)"')


async def form_tokens(client: TestClient) -> dict[str, str]:  # type: ignore[type-arg]
    response = await client.get("/contact")
    assert response.status == 200
    return dict(HIDDEN.findall(await response.text()))


def form_data(tokens: dict[str, str], **fields: str | bytes) -> aiohttp.FormData:
    data = aiohttp.FormData()
    values: dict[str, str | bytes] = {
        **tokens,
        "kind": "report",
        "subject": "Straatlamp kapot",
        "message": "De straatlamp voor nummer 12 in de Kerkstraat brandt al een week niet.",
        "name": "An Peeters",
        "email": "An.Peeters@Example.be",
        "address": "Kerkstraat 12, Wingene",
    }
    values.update(fields)
    for key, value in values.items():
        if key == "attachment" and isinstance(value, bytes):
            data.add_field(
                "attachment", io.BytesIO(value), filename="lamp.jpg", content_type="image/jpeg"
            )
        else:
            data.add_field(key, value)
    return data


async def count(client: TestClient, model: type) -> int:  # type: ignore[type-arg]
    db = client.app[RUNTIME].db
    async with db.engine.connect() as conn:
        return int(await conn.scalar(sa.select(sa.func.count()).select_from(model.__table__)) or 0)  # type: ignore[attr-defined]


async def test_form_is_accessible_dutch_and_sets_a_csrf_cookie(client: TestClient) -> None:  # type: ignore[type-arg]
    response = await client.get("/contact")
    html = await response.text()
    assert response.status == 200
    assert '<html lang="nl">' in html
    for field in ("subject", "message", "address", "attachment", "name", "email", "phone"):
        assert f'<label for="{field}"' in html and f'id="{field}"' in html
    assert "meldpunt_csrf" in response.cookies
    assert response.cookies["meldpunt_csrf"]["samesite"] == "Strict"


async def test_valid_submission_with_photo_becomes_a_routed_ticket(client: TestClient) -> None:  # type: ignore[type-arg]
    tokens = await form_tokens(client)
    response = await client.post("/contact", data=form_data(tokens, attachment=JPEG))
    html = await response.text()

    assert response.status == 200, html
    reference = re.search(r'id="referentie">([^<]+)<', html)
    assert reference and reference.group(1) == "1750-000001"
    runtime = client.app[RUNTIME]
    async with runtime.db.session() as session:
        ticket = (await session.execute(sa.select(Ticket))).scalar_one()
        attachment = (await session.execute(sa.select(AttachmentRow))).scalar_one()
        ack = (await session.execute(sa.select(OutboxRow))).scalar_one()
    assert ticket.department == "technical-service"
    assert ticket.location_address == "Kerkstraat 12, Wingene"
    assert (ticket.reply_channel, ticket.reply_address) == ("email", "an.peeters@example.be")
    assert attachment.size == len(JPEG) and attachment.sha256
    stored = runtime.files.path_for(attachment.sha256)
    assert stored.read_bytes() == JPEG
    assert (ack.channel, ack.recipient, ack.state) == ("email", "an.peeters@example.be", "pending")


async def test_missing_fields_are_explained_next_to_each_field(client: TestClient) -> None:  # type: ignore[type-arg]
    tokens = await form_tokens(client)
    response = await client.post(
        "/contact", data=form_data(tokens, kind="", message="", email="", name="Jan")
    )
    html = await response.text()
    assert response.status == 422
    for field in ("kind", "message", "email"):
        assert f'id="{field}-error"' in html
    assert 'aria-invalid="true"' in html
    assert 'value="Jan"' in html  # what the citizen typed is kept
    assert await count(client, Ticket) == 0


async def test_invalid_email_and_phone_are_refused(client: TestClient) -> None:  # type: ignore[type-arg]
    tokens = await form_tokens(client)
    response = await client.post("/contact", data=form_data(tokens, email="an@", phone="12"))
    html = await response.text()
    assert response.status == 422
    assert "e-mailadres klopt niet" in html and "telefoonnummer klopt niet" in html
    assert await count(client, Ticket) == 0


async def test_oversize_attachment_is_refused_at_the_field(client: TestClient) -> None:  # type: ignore[type-arg]
    limit = client.app[RUNTIME].config.settings.channels.webform.max_attachment_bytes
    tokens = await form_tokens(client)
    big = b"\xff\xd8\xff" + b"\x00" * limit
    response = await client.post("/contact", data=form_data(tokens, attachment=big))
    html = await response.text()
    assert response.status == 422
    assert 'id="attachment-error"' in html and "te groot" in html
    assert await count(client, Ticket) == 0


async def test_a_file_that_is_not_what_it_claims_is_refused(client: TestClient) -> None:  # type: ignore[type-arg]
    tokens = await form_tokens(client)
    response = await client.post("/contact", data=form_data(tokens, attachment=b"MZ\x90\x00 exe"))
    assert response.status == 422
    assert "geen geldige image/jpeg" in await response.text()


async def test_missing_or_forged_csrf_token_stores_nothing(client: TestClient) -> None:  # type: ignore[type-arg]
    tokens = await form_tokens(client)
    missing = await client.post("/contact", data=form_data({}))
    forged = await client.post(
        "/contact", data=form_data({**tokens, "csrf_token": tokens["csrf_token"][:-2] + "xx"})
    )
    assert missing.status == 403 and forged.status == 403
    assert "verlopen" in await forged.text()
    assert await count(client, Ticket) == 0


async def test_honeypot_submission_is_thanked_but_not_stored(client: TestClient) -> None:  # type: ignore[type-arg]
    tokens = await form_tokens(client)
    response = await client.post("/contact", data=form_data(tokens, website="http://spam.example"))
    assert response.status == 200
    assert await count(client, Ticket) == 0


async def test_double_submission_lands_on_one_ticket(client: TestClient) -> None:  # type: ignore[type-arg]
    tokens = await form_tokens(client)
    first = await client.post("/contact", data=form_data(tokens))
    second = await client.post("/contact", data=form_data(tokens))
    ref1 = re.search(r'id="referentie">([^<]+)<', await first.text())
    ref2 = re.search(r'id="referentie">([^<]+)<', await second.text())
    assert ref1 and ref2 and ref1.group(1) == ref2.group(1)
    assert await count(client, Ticket) == 1


async def test_rate_limit_per_client_address(client: TestClient) -> None:  # type: ignore[type-arg]
    per_minute = client.app[RUNTIME].config.settings.channels.webform.rate_limit_per_minute
    statuses = []
    for _ in range(per_minute + 2):
        response = await client.post("/contact", json={"kind": "question"})
        statuses.append(response.status)
    assert statuses[:per_minute] == [422] * per_minute
    assert statuses[per_minute:] == [429, 429]


async def test_json_twin_for_the_towns_app(client: TestClient) -> None:  # type: ignore[type-arg]
    body = {
        "kind": "complaint",
        "subject": "Onbeleefd behandeld",
        "message": "Aan het loket werd ik onvriendelijk behandeld.",
        "phone": "0470 12 34 56",
        "submission_id": "app0000000001",
    }
    created = await client.post("/contact", json=body)
    again = await client.post("/contact", json=body)
    invalid = await client.post("/contact", json={"kind": "nonsense"})
    assert created.status == 201
    payload = await created.json()
    assert payload["reference"] == "1750-000001"
    assert again.status == 200 and (await again.json())["duplicate"] is True
    assert invalid.status == 422
    assert set((await invalid.json())["error"]["fields"]) >= {"kind", "message", "email"}
    async with client.app[RUNTIME].db.session() as session:
        ticket = (await session.execute(sa.select(Ticket))).scalar_one()
    assert ticket.department == "complaints"
    assert (ticket.reply_channel, ticket.reply_address) == ("sms", "+32470123456")
