"""The staff REST API as staff and integrators use it: auth, scope, listing, and ticket actions."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import col

from inbox import ApiContext
from ingest.files import AttachmentStore
from store.db import Database
from store.models import (
    ApiToken,
    AttachmentRow,
    Message,
    OutboxRow,
    Ticket,
    TicketEvent,
    User,
    utcnow,
)
from store.outbox import OutboundDraft, queue_outbound
from store.users import revoke_token
from tests.inbox.conftest import DEPARTMENTS, Api, MakeApi, MakeTicket


async def _rows(database: Database, model: Any, *where: Any) -> list[Any]:
    async with database.session() as session:
        return list((await session.scalars(sa.select(model).where(*where))).all())


async def _ticket(database: Database, reference: str) -> Ticket:
    async with database.session() as session:
        return (
            await session.scalars(sa.select(Ticket).where(col(Ticket.reference) == reference))
        ).one()


async def _events(database: Database, ticket_id: int) -> list[TicketEvent]:
    events = await _rows(database, TicketEvent, col(TicketEvent.ticket_id) == ticket_id)
    return sorted(events, key=lambda e: e.id)


# Authentication


async def test_missing_token_is_401_with_bearer_challenge(api: Api) -> None:
    response = await api.client.get("/api/v1/tickets")
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await response.json())["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(
    "header",
    ["Bearer mp_not-a-real-token", "Bearer ", "Basic YWRtaW46c2VjcmV0", "mp_token-without-scheme"],
)
async def test_wrong_or_malformed_token_is_401(api: Api, header: str) -> None:
    response = await api.client.get("/api/v1/me", headers={"Authorization": header})
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "error" in await response.json()


async def test_revoked_token_stops_working(api: Api, database: Database) -> None:
    assert (await api.get("/me", "operator"))[0] == 200
    async with database.session() as session:
        assert await revoke_token(session, api.tokens["operator"])
    status, body = await api.get("/me", "operator")
    assert status == 401
    assert body["error"]["code"] == "invalid_token"


async def test_deactivated_user_is_locked_out(api: Api, database: Database) -> None:
    async with database.session() as session:
        await session.execute(
            sa.update(User).where(col(User.email) == "operator@town.test").values(active=False)
        )
    assert (await api.get("/me", "operator"))[0] == 401


async def test_me_describes_the_token_owner(api: Api) -> None:
    status, body = await api.get("/me", "agent")
    assert status == 200
    assert body["email"] == "tech.agent@town.test"
    assert body["role"] == "agent"
    assert body["departments"] == ["technical"]


async def test_departments_lists_all_configured(api: Api) -> None:
    status, body = await api.get("/departments", "agent")
    assert status == 200
    assert body["items"] == [{"id": key, "name": name} for key, name in DEPARTMENTS.items()]


async def test_unknown_path_and_method_answer_json_errors(api: Api) -> None:
    status, body = await api.get("/nothing-here")
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, body = await api.call("DELETE", "/tickets")
    assert (status, body["error"]["code"]) == (405, "method_not_allowed")


# Department scope


async def test_agent_lists_only_tickets_of_own_departments(
    api: Api, make_ticket: MakeTicket
) -> None:
    technical = await make_ticket(department="technical")
    environment = await make_ticket(department="environment")
    front = await make_ticket(department="front-desk")

    _, body = await api.get("/tickets", "agent")
    assert [t["reference"] for t in body["items"]] == [technical.reference]
    # Asking for another department does not widen the scope.
    _, body = await api.get("/tickets", "agent", params={"department": "environment"})
    assert body["items"] == []

    for who in ("admin", "operator"):
        _, body = await api.get("/tickets", who)
        assert {t["reference"] for t in body["items"]} == {
            technical.reference,
            environment.reference,
            front.reference,
        }


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "", None),
        ("POST", "/replies", {"text": "Hallo"}),
        ("POST", "/notes", {"text": "Intern"}),
        ("POST", "/transfer", {"department": "technical", "reason": "is voor ons"}),
        ("POST", "/status", {"status": "open"}),
    ],
)
async def test_ticket_outside_agents_departments_does_not_exist_for_them(
    api: Api,
    make_ticket: MakeTicket,
    database: Database,
    method: str,
    suffix: str,
    body: Any,
) -> None:
    foreign = await make_ticket(department="environment")
    status, answer = await api.call(
        method, f"/tickets/{foreign.reference}{suffix}", "agent", json=body
    )
    assert status == 404
    assert answer["error"]["code"] == "not_found"
    # Same answer as for a reference that does not exist at all: nothing leaks.
    status, missing = await api.call(method, f"/tickets/MP-0000-00000{suffix}", "agent", json=body)
    assert status == 404
    assert (
        missing["error"]["message"].replace("MP-0000-00000", foreign.reference)
        == (answer["error"]["message"])
    )
    ticket = await _ticket(database, foreign.reference)
    assert (ticket.status, ticket.department) == ("new", "environment")
    assert [e.type for e in await _events(database, foreign.ticket_id)] == ["created"]
    assert await _rows(database, OutboxRow) == []


async def test_agent_may_hand_a_ticket_to_another_department_and_then_loses_it(
    api: Api, make_ticket: MakeTicket
) -> None:
    ticket = await make_ticket(department="technical")
    status, body = await api.post(
        f"/tickets/{ticket.reference}/transfer",
        {"department": "environment", "reason": "gaat over afval"},
        "agent",
    )
    assert status == 200
    assert body["department"] == "environment"
    assert (await api.get(f"/tickets/{ticket.reference}", "agent"))[0] == 404
    assert (await api.get(f"/tickets/{ticket.reference}", "env_agent"))[0] == 200


# Listing


async def test_filters_narrow_the_list(api: Api, make_ticket: MakeTicket) -> None:
    lamp = await make_ticket(kind="report", channel="sms", subject="Lamp stuk")
    bin_ = await make_ticket(
        kind="complaint",
        channel="email",
        status="open",
        department="environment",
        subject="Afvalbak 100% vol_",
    )
    thanks = await make_ticket(
        kind="compliment", channel="webform", status="resolved", subject="Dank voor de hulp"
    )

    async def refs(params: Any) -> set[str]:
        status, body = await api.get("/tickets", params=params)
        assert status == 200, body
        return {t["reference"] for t in body["items"]}

    assert await refs({"status": "open"}) == {bin_.reference}
    assert await refs({"status": "new,resolved"}) == {lamp.reference, thanks.reference}
    assert await refs([("kind", "report"), ("kind", "compliment")]) == {
        lamp.reference,
        thanks.reference,
    }
    assert await refs({"channel": "email"}) == {bin_.reference}
    assert await refs({"department": "environment"}) == {bin_.reference}
    assert await refs({"q": "LAMP"}) == {lamp.reference}
    # q is a full-text search (tests/inbox/test_search.py): wildcards and search syntax are
    # plain text, so "100%" finds the word 100 and "_" alone, with no word in it, finds nothing.
    assert await refs({"q": "100%"}) == {bin_.reference}
    assert await refs({"q": "_"}) == set()
    assert await refs({"status": "new", "channel": "email"}) == set()


@pytest.mark.parametrize(
    ("params", "parameter", "valid"),
    [
        ({"status": "open,bogus"}, "status", ["new", "open", "pending", "resolved", "closed"]),
        ({"kind": "melding"}, "kind", None),
        ({"channel": "fax"}, "channel", None),
        ({"department": "police"}, "department", list(DEPARTMENTS)),
        ({"limit": "0"}, "limit", None),
        ({"limit": "201"}, "limit", None),
        ({"limit": "ten"}, "limit", None),
        ({"cursor": "not-a-cursor"}, "cursor", None),
        ({"statuss": "open"}, "statuss", None),
    ],
)
async def test_invalid_filters_are_400_naming_the_parameter(
    api: Api, params: dict[str, str], parameter: str, valid: list[str] | None
) -> None:
    status, body = await api.get("/tickets", params=params)
    assert status == 400
    error = body["error"]
    assert error["code"] == "invalid_parameter"
    assert error["details"]["parameter"] == parameter
    assert parameter in error["message"]
    if valid is not None:
        assert error["details"]["valid"] == valid
        assert all(v in error["message"] for v in valid)


async def test_pages_cover_every_ticket_once_newest_first(
    api: Api, make_ticket: MakeTicket
) -> None:
    base = utcnow() - timedelta(days=1)
    # Pairs share a creation time, so the order must also rely on the id to stay stable.
    offsets = [0, 1, 1, 2, 3, 3, 4]
    made = [await make_ticket(created_at=base + timedelta(minutes=m)) for m in offsets]

    pages: list[list[str]] = []
    cursor = None
    while True:
        params = {"limit": "3"} | ({"cursor": cursor} if cursor else {})
        status, body = await api.get("/tickets", params=params)
        assert status == 200
        pages.append([t["reference"] for t in body["items"]])
        cursor = body["next_cursor"]
        if cursor is None:
            break
        # A ticket arriving while someone pages must not shift the pages still to come.
        await make_ticket(created_at=utcnow())
        assert len(pages) < 10

    assert [len(p) for p in pages] == [3, 3, 1]
    seen = [ref for page in pages for ref in page]
    newest_first = sorted(
        zip(offsets, made, strict=True), key=lambda p: (p[0], p[1].ticket_id), reverse=True
    )
    assert seen == [t.reference for _, t in newest_first]


# One ticket


async def test_ticket_detail_has_contact_messages_and_history(
    api: Api, make_ticket: MakeTicket, database: Database
) -> None:
    ticket = await make_ticket(
        channel="email",
        identities=[("email", "an@example.be"), ("phone", "+32470999999")],
        text="Zie foto.",
        html='<p>Zie foto</p><script>alert("x")</script>',
        full_text="Zie foto.\n\n-- \nAn Peeters\n\n> Op 2 mei schreef meldpunt: ...",
    )
    async with database.session() as session:
        await queue_outbound(
            await session.connection(),
            [
                OutboundDraft(
                    ticket_id=ticket.ticket_id,
                    channel="whatsapp",
                    recipient="+32470999999",
                    text="Bedankt, we bekijken het.",
                    purpose="acknowledgement",
                    reason="waiting for the 24-hour window",
                )
            ],
            utcnow(),
        )

    status, body = await api.get(f"/tickets/{ticket.reference}", "agent")
    assert status == 200
    assert body["reference"] == ticket.reference
    assert body["department_name"] == "Technische dienst"
    assert body["contact"]["name"] == "Burger 1"
    assert body["contact"]["identities"] == [
        {"kind": "email", "value": "an@example.be"},
        {"kind": "phone", "value": "+32470999999"},
    ]
    inbound, outbound = body["messages"]
    assert inbound["direction"] == "in"
    assert inbound["outbox"] is None
    # Citizen HTML reaches staff without its scripts.
    assert "<p>Zie foto</p>" in inbound["html"]
    assert "script" not in inbound["html"]
    # The shortened text comes first; the whole mail is there for whoever needs the history.
    assert inbound["text"] == "Zie foto."
    assert inbound["full_text"].startswith("Zie foto.\n\n-- \nAn Peeters")
    assert outbound["direction"] == "out"
    assert outbound["full_text"] is None
    assert outbound["outbox"]["state"] == "pending"
    assert outbound["outbox"]["reason"] == "waiting for the 24-hour window"
    assert [e["type"] for e in body["events"]] == ["created"]
    assert body["created_at"].endswith("+00:00")


# Replies


async def test_reply_queues_the_message_to_the_citizen_and_opens_the_ticket(
    api: Api, make_ticket: MakeTicket, database: Database
) -> None:
    ticket = await make_ticket(channel="sms")
    before = await _ticket(database, ticket.reference)

    status, message = await api.post(
        f"/tickets/{ticket.reference}/replies",
        {"text": "  We herstellen de lamp morgen.\n"},
        "agent",
    )
    assert status == 201
    assert message["direction"] == "out"
    assert message["text"] == "We herstellen de lamp morgen."
    assert message["author"]["email"] == "tech.agent@town.test"
    assert message["outbox"]["state"] == "pending"

    [row] = await _rows(database, OutboxRow)
    assert (row.channel, row.recipient, row.state) == ("sms", before.reply_address, "pending")
    assert row.id == message["outbox"]["id"]
    assert row.body == "We herstellen de lamp morgen."
    after = await _ticket(database, ticket.reference)
    assert after.status == "open"
    assert after.updated_at > before.updated_at
    events = await _events(database, ticket.ticket_id)
    assert [e.type for e in events] == ["created", "replied", "status_changed"]
    assert events[1].data["message_id"] == message["id"]
    assert events[2].data == {"from": "new", "to": "open", "reason": "reply"}

    _, detail = await api.get(f"/tickets/{ticket.reference}", "agent")
    assert detail["messages"][-1]["outbox"]["id"] == row.id


async def test_reply_can_set_another_status(
    api: Api, make_ticket: MakeTicket, database: Database
) -> None:
    ticket = await make_ticket(status="open")
    status, _ = await api.post(
        f"/tickets/{ticket.reference}/replies", {"text": "Opgelost.", "status": "resolved"}
    )
    assert status == 201
    after = await _ticket(database, ticket.reference)
    assert after.status == "resolved"
    assert after.resolved_at is not None


async def test_reply_with_a_status_change_not_allowed_changes_nothing(
    api: Api, make_ticket: MakeTicket, database: Database
) -> None:
    ticket = await make_ticket(status="open")
    status, body = await api.post(
        f"/tickets/{ticket.reference}/replies", {"text": "Hallo", "status": "new"}
    )
    assert (status, body["error"]["code"]) == (409, "invalid_transition")
    assert await _rows(database, OutboxRow) == []
    assert await _rows(database, Message, col(Message.direction) == "out") == []


async def test_reply_on_another_channel_goes_to_the_matching_identity(
    api: Api, make_ticket: MakeTicket, database: Database
) -> None:
    ticket = await make_ticket(
        channel="sms",
        identities=[("phone", "+32470123456"), ("email", "burger@example.be")],
        subject="Put in de weg",
    )
    status, message = await api.post(
        f"/tickets/{ticket.reference}/replies", {"text": "Zie bijlage.", "channel": "email"}
    )
    assert status == 201
    assert message["channel"] == "email"
    [row] = await _rows(database, OutboxRow)
    assert (row.channel, row.recipient) == ("email", "burger@example.be")
    # The reference in the subject lets the citizen's answer join this ticket.
    assert ticket.reference in (row.subject or "")


async def test_reply_on_a_channel_the_contact_lacks_is_422(
    api: Api, make_ticket: MakeTicket, database: Database
) -> None:
    ticket = await make_ticket(channel="sms")
    status, body = await api.post(
        f"/tickets/{ticket.reference}/replies", {"text": "Hallo", "channel": "email"}
    )
    assert status == 422
    assert body["error"]["code"] == "no_address"
    assert body["error"]["details"]["reachable_channels"] == ["sms", "whatsapp"]
    assert await _rows(database, OutboxRow) == []
    assert (await _ticket(database, ticket.reference)).status == "new"


async def test_reply_on_a_channel_that_cannot_carry_replies_is_422(
    api: Api, make_ticket: MakeTicket
) -> None:
    ticket = await make_ticket(channel="voice")
    status, body = await api.post(
        f"/tickets/{ticket.reference}/replies", {"text": "Hallo", "channel": "voice"}
    )
    assert (status, body["error"]["code"]) == (422, "channel_not_replyable")


async def test_reply_without_any_address_is_queued_with_its_reason(
    api: Api, make_ticket: MakeTicket, database: Database
) -> None:
    ticket = await make_ticket(
        channel="webform", identities=[], reply_channel=None, no_reply_address=True
    )
    status, message = await api.post(f"/tickets/{ticket.reference}/replies", {"text": "Hallo"})
    assert status == 201
    assert message["outbox"]["state"] == "pending"
    assert message["outbox"]["reason"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"text": ""}, 422, "invalid_body"),
        ({"text": "   \n"}, 422, "invalid_body"),
        ({}, 422, "invalid_body"),
        ({"text": "Hallo", "channel": "pigeon"}, 422, "invalid_body"),
        ({"text": "Hallo", "extra": 1}, 422, "invalid_body"),
        (["Hallo"], 422, "invalid_body"),
    ],
)
async def test_invalid_reply_bodies_are_refused(
    api: Api,
    make_ticket: MakeTicket,
    database: Database,
    body: Any,
    status: int,
    code: str,
) -> None:
    ticket = await make_ticket()
    got, answer = await api.post(f"/tickets/{ticket.reference}/replies", body)
    assert (got, answer["error"]["code"]) == (status, code)
    assert answer["error"]["details"]
    assert await _rows(database, OutboxRow) == []


async def test_body_that_is_not_json_is_400(api: Api, make_ticket: MakeTicket) -> None:
    ticket = await make_ticket()
    response = await api.client.post(
        f"/api/v1/tickets/{ticket.reference}/replies",
        data=b"text=Hallo",
        headers={"Authorization": f"Bearer {api.tokens['admin']}"},
    )
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "invalid_json"


async def test_closed_ticket_must_be_reopened_before_replying(
    api: Api, make_ticket: MakeTicket
) -> None:
    ticket = await make_ticket(status="closed")
    status, body = await api.post(f"/tickets/{ticket.reference}/replies", {"text": "Hallo"})
    assert (status, body["error"]["code"]) == (409, "ticket_closed")


# Replies with files

PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
PHOTO = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 8 + b"\xff\xd9"
SMALL_LIMIT = 1000


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def a_file(**changes: str) -> dict[str, str]:
    values = {
        "filename": "offerte.pdf",
        "content_type": "application/pdf",
        "content_base64": b64(PDF),
    }
    return values | changes


def stored_files(files: AttachmentStore) -> list[str]:
    return sorted(p.name for p in files.root.rglob("*") if p.is_file())


async def post_large(api: Api, path: str, body: Any) -> tuple[int, Any]:
    """POST a body of more than 1 MiB, streamed as a browser or integrator would send it."""
    response = await api.client.post(
        f"/api/v1{path}",
        # A file object: the test client warns about large bodies given as bytes.
        data=io.BytesIO(json.dumps(body).encode()),
        headers={
            "Authorization": f"Bearer {api.tokens['admin']}",
            "Content-Type": "application/json",
        },
    )
    return response.status, await response.json()


async def test_reply_with_files_stores_them_on_the_outbound_message(
    api: Api, make_ticket: MakeTicket, database: Database, files: AttachmentStore
) -> None:
    ticket = await make_ticket(
        channel="email",
        identities=[("email", "an@example.be")],
        reply_channel="email",
        no_reply_address=True,
    )
    # The photo's base64 broken into 76-character lines, as the base64 tool writes it.
    photo = b64(PHOTO)
    wrapped = "\n".join(photo[i : i + 76] for i in range(0, len(photo), 76))
    status, message = await api.post(
        f"/tickets/{ticket.reference}/replies",
        {
            "text": "In bijlage de offerte en een foto van de herstelling.",
            "attachments": [
                a_file(
                    filename="../../Offerte: herstelling stoep.pdf", content_type="Application/PDF"
                ),
                a_file(
                    filename="foto stoep.jpg", content_type="image/jpeg", content_base64=wrapped
                ),
            ],
        },
        "agent",
    )
    assert status == 201, message
    pdf_sha, photo_sha = hashlib.sha256(PDF).hexdigest(), hashlib.sha256(PHOTO).hexdigest()
    expected = [
        {
            "filename": "Offerte herstelling stoep.pdf",
            "content_type": "application/pdf",
            "size": len(PDF),
            "sha256": pdf_sha,
            "removed_reason": None,
            "content_id": None,
        },
        {
            "filename": "foto stoep.jpg",
            "content_type": "image/jpeg",
            "size": len(PHOTO),
            "sha256": photo_sha,
            "removed_reason": None,
            "content_id": None,
        },
    ]
    assert [{k: v for k, v in a.items() if k != "id"} for a in message["attachments"]] == expected

    rows = await _rows(database, AttachmentRow)
    assert [(r.message_id, r.filename, r.sha256) for r in sorted(rows, key=lambda r: r.id)] == [
        (message["id"], f["filename"], f["sha256"]) for f in expected
    ]
    assert [a["id"] for a in message["attachments"]] == sorted(r.id for r in rows)
    assert await files.get(pdf_sha) == PDF
    assert await files.get(photo_sha) == PHOTO
    [box] = await _rows(database, OutboxRow)
    assert (box.message_id, box.channel, box.recipient) == (message["id"], "email", "an@example.be")
    assert box.state == "pending"

    _, detail = await api.get(f"/tickets/{ticket.reference}", "agent")
    inbound, outbound = detail["messages"]
    assert inbound["attachments"] == []
    assert outbound["attachments"] == message["attachments"]


async def test_a_file_larger_than_a_plain_body_may_be_is_accepted(
    api: Api, make_ticket: MakeTicket, files: AttachmentStore
) -> None:
    big = bytes(range(256)) * (8 * 1024)  # 2 MiB: twice what the API reads of other bodies
    ticket = await make_ticket()
    status, message = await post_large(
        api,
        f"/tickets/{ticket.reference}/replies",
        {"text": "Het volledige rapport.", "attachments": [a_file(content_base64=b64(big))]},
    )
    assert status == 201, message
    assert message["attachments"][0]["size"] == len(big)
    assert await files.get(message["attachments"][0]["sha256"]) == big


@pytest.mark.parametrize(
    ("attachments", "fields"),
    [
        pytest.param([a_file()] * 11, ["attachments"], id="eleven files"),
        pytest.param(
            [a_file(content_base64=b64(b"x" * (SMALL_LIMIT + 1)))],
            ["attachments.0.content_base64"],
            id="too big",
        ),
        pytest.param(
            [a_file(), a_file(content_base64="bm9n IGdlZW4=!")],
            ["attachments.1.content_base64"],
            id="not base64",
        ),
        pytest.param(
            [a_file(content_base64="QUJD€")], ["attachments.0.content_base64"], id="not ascii"
        ),
        pytest.param(
            [a_file(content_base64="QUJDRA")], ["attachments.0.content_base64"], id="no padding"
        ),
        pytest.param([a_file(content_base64="")], ["attachments.0.content_base64"], id="empty"),
        pytest.param([a_file(content_base64=" \n ")], ["attachments.0.content_base64"], id="blank"),
        pytest.param([a_file(content_type="pdf")], ["attachments.0.content_type"], id="no slash"),
        pytest.param(
            [a_file(content_type="text/plain; charset=utf-8")],
            ["attachments.0.content_type"],
            id="parameters",
        ),
        pytest.param(
            [a_file(content_type="multipart/mixed")],
            ["attachments.0.content_type"],
            id="container type",
        ),
        pytest.param([a_file(filename="../..")], ["attachments.0.filename"], id="no name left"),
        pytest.param(
            [{"filename": "a.pdf", "content_type": "application/pdf"}],
            ["attachments.0.content_base64"],
            id="missing bytes",
        ),
        pytest.param(
            [a_file(), a_file(content_base64="%%%"), a_file(content_base64=b64(b"x" * 2000))],
            ["attachments.1.content_base64", "attachments.2.content_base64"],
            id="every problem at once",
        ),
    ],
)
async def test_invalid_files_are_422_naming_the_field_and_store_nothing(
    make_api: MakeApi,
    make_ticket: MakeTicket,
    database: Database,
    files: AttachmentStore,
    attachments: list[dict[str, str]],
    fields: list[str],
) -> None:
    api = await make_api(ApiContext(database, DEPARTMENTS, files, max_attachment_bytes=SMALL_LIMIT))
    ticket = await make_ticket()
    status, body = await api.post(
        f"/tickets/{ticket.reference}/replies", {"text": "Zie bijlage.", "attachments": attachments}
    )
    assert (status, body["error"]["code"]) == (422, "invalid_body"), body
    assert [d["field"] for d in body["error"]["details"]] == fields
    assert all(field in body["error"]["message"] for field in fields)
    assert await _rows(database, OutboxRow) == []
    assert await _rows(database, AttachmentRow) == []
    assert stored_files(files) == []


async def test_a_body_past_what_the_files_could_make_it_is_413(
    make_api: MakeApi, make_ticket: MakeTicket, database: Database, files: AttachmentStore
) -> None:
    api = await make_api(ApiContext(database, DEPARTMENTS, files, max_attachment_bytes=SMALL_LIMIT))
    ticket = await make_ticket()
    status, body = await post_large(
        api,
        f"/tickets/{ticket.reference}/replies",
        {"text": "Zie bijlage.", "attachments": [a_file(content_base64=b64(b"x" * 2_000_000))]},
    )
    assert (status, body["error"]["code"]) == (413, "body_too_large")
    assert stored_files(files) == []


@pytest.mark.parametrize(
    ("ticket_changes", "status", "code"),
    [
        ({"department": "environment"}, 404, "not_found"),
        ({"status": "closed"}, 409, "ticket_closed"),
    ],
)
async def test_a_refused_reply_stores_none_of_its_files(
    api: Api,
    make_ticket: MakeTicket,
    database: Database,
    files: AttachmentStore,
    ticket_changes: dict[str, str],
    status: int,
    code: str,
) -> None:
    ticket = await make_ticket(**ticket_changes)
    got, body = await api.post(
        f"/tickets/{ticket.reference}/replies",
        {"text": "Zie bijlage.", "attachments": [a_file()]},
        "agent",
    )
    assert (got, body["error"]["code"]) == (status, code)
    assert await _rows(database, AttachmentRow) == []
    assert stored_files(files) == []


# Notes


async def test_note_is_recorded_but_never_sent(
    api: Api, make_ticket: MakeTicket, database: Database
) -> None:
    ticket = await make_ticket()
    status, note = await api.post(
        f"/tickets/{ticket.reference}/notes", {"text": "Buur belde ook al."}, "agent"
    )
    assert status == 201
    assert note["direction"] == "note"
    assert note["outbox"] is None
    assert note["author"]["email"] == "tech.agent@town.test"
    assert await _rows(database, OutboxRow) == []
    events = await _events(database, ticket.ticket_id)
    assert [e.type for e in events] == ["created", "note"]
    assert (await _ticket(database, ticket.reference)).status == "new"

    _, detail = await api.get(f"/tickets/{ticket.reference}")
    assert detail["messages"][-1]["text"] == "Buur belde ook al."


async def test_empty_note_is_422(api: Api, make_ticket: MakeTicket) -> None:
    ticket = await make_ticket()
    status, _ = await api.post(f"/tickets/{ticket.reference}/notes", {"text": " "})
    assert status == 422


# Transfers


async def test_transfer_records_who_moved_it_where_and_why(
    api: Api, make_ticket: MakeTicket, database: Database
) -> None:
    ticket = await make_ticket(department="front-desk")
    status, body = await api.post(
        f"/tickets/{ticket.reference}/transfer",
        {"department": "technical", "reason": "straatverlichting"},
        "operator",
    )
    assert status == 200
    assert (body["department"], body["department_name"]) == ("technical", "Technische dienst")
    assert (await _ticket(database, ticket.reference)).department == "technical"
    event = (await _events(database, ticket.ticket_id))[-1]
    assert event.type == "transferred"
    assert event.data == {"from": "front-desk", "to": "technical", "reason": "straatverlichting"}
    _, detail = await api.get(f"/tickets/{ticket.reference}")
    assert detail["events"][-1]["actor"]["email"] == "operator@town.test"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"department": "environment"}, 422, "invalid_body"),
        ({"department": "environment", "reason": "  "}, 422, "invalid_body"),
        ({"department": "police", "reason": "diefstal"}, 422, "unknown_department"),
        ({"department": "technical", "reason": "blijft hier"}, 409, "unchanged"),
    ],
)
async def test_transfer_refusals(
    api: Api,
    make_ticket: MakeTicket,
    database: Database,
    body: Any,
    status: int,
    code: str,
) -> None:
    ticket = await make_ticket(department="technical")
    got, answer = await api.post(f"/tickets/{ticket.reference}/transfer", body)
    assert (got, answer["error"]["code"]) == (status, code)
    if code == "unknown_department":
        assert answer["error"]["details"]["valid"] == sorted(DEPARTMENTS)
    assert (await _ticket(database, ticket.reference)).department == "technical"
    assert [e.type for e in await _events(database, ticket.ticket_id)] == ["created"]


# Status


async def test_status_follows_the_lifecycle(
    api: Api, make_ticket: MakeTicket, database: Database
) -> None:
    ticket = await make_ticket()
    path = f"/tickets/{ticket.reference}/status"

    assert (await api.post(path, {"status": "open"}, "agent"))[0] == 200
    status, body = await api.post(path, {"status": "resolved", "reason": "hersteld"}, "agent")
    assert status == 200
    assert body["resolved_at"] is not None
    # The citizen says it is still broken.
    status, body = await api.post(path, {"status": "open"}, "agent")
    assert (status, body["resolved_at"]) == (200, None)
    # Closing a ticket that is not resolved sends the citizen nothing: staff must say why.
    status, body = await api.post(path, {"status": "closed"}, "agent")
    assert (status, body["error"]["code"]) == (422, "reason_required")
    assert (await api.post(path, {"status": "closed", "reason": "dubbel"}, "agent"))[0] == 200

    events = [e for e in await _events(database, ticket.ticket_id) if e.type == "status_changed"]
    assert [(e.data["from"], e.data["to"]) for e in events] == [
        ("new", "open"),
        ("open", "resolved"),
        ("resolved", "open"),
        ("open", "closed"),
    ]
    assert events[1].data["reason"] == "hersteld"
    assert (await _ticket(database, ticket.reference)).resolved_at is not None


async def test_closed_is_final_except_for_admins_and_operators(
    api: Api, make_ticket: MakeTicket, database: Database
) -> None:
    ticket = await make_ticket(status="closed")
    path = f"/tickets/{ticket.reference}/status"
    status, body = await api.post(path, {"status": "open"}, "agent")
    assert (status, body["error"]["code"]) == (403, "forbidden")
    status, body = await api.post(path, {"status": "resolved"}, "operator")
    assert (status, body["error"]["code"]) == (409, "invalid_transition")
    assert body["error"]["details"]["allowed"] == ["open"]
    assert (await _ticket(database, ticket.reference)).status == "closed"

    status, body = await api.post(path, {"status": "open", "reason": "nieuw feit"}, "operator")
    assert (status, body["status"]) == (200, "open")


@pytest.mark.parametrize(
    ("current", "target", "status", "code"),
    [
        ("open", "new", 409, "invalid_transition"),
        ("resolved", "pending", 409, "invalid_transition"),
        ("open", "open", 409, "unchanged"),
        ("open", "done", 422, "invalid_body"),
    ],
)
async def test_invalid_status_changes_are_refused(
    api: Api,
    make_ticket: MakeTicket,
    database: Database,
    current: str,
    target: str,
    status: int,
    code: str,
) -> None:
    ticket = await make_ticket(status=current)
    got, body = await api.post(f"/tickets/{ticket.reference}/status", {"status": target})
    assert (got, body["error"]["code"]) == (status, code)
    assert (await _ticket(database, ticket.reference)).status == current


# Outbox


async def test_outbox_is_for_admins_and_operators(
    api: Api, make_ticket: MakeTicket, database: Database
) -> None:
    ticket = await make_ticket()
    await api.post(f"/tickets/{ticket.reference}/replies", {"text": "Eerste"})
    await api.post(f"/tickets/{ticket.reference}/replies", {"text": "Tweede"})
    async with database.session() as session:
        first = (await session.scalars(sa.select(OutboxRow).order_by(col(OutboxRow.id)))).first()
        assert first is not None
        first.state, first.reason, first.attempts = "failed", "number unreachable", 5

    status, body = await api.get("/outbox", "agent")
    assert (status, body["error"]["code"]) == (403, "forbidden")

    status, body = await api.get("/outbox", "operator", params={"state": "pending"})
    assert status == 200
    [pending] = body["items"]
    assert pending["ticket_reference"] == ticket.reference
    assert (pending["channel"], pending["state"], pending["attempts"]) == ("sms", "pending", 0)
    assert pending["recipient"] == (await _ticket(database, ticket.reference)).reply_address
    assert pending["next_attempt_at"]

    _, body = await api.get("/outbox", "admin", params={"state": "failed"})
    assert [(i["state"], i["reason"]) for i in body["items"]] == [("failed", "number unreachable")]

    _, body = await api.get("/outbox", "admin", params={"limit": "1"})
    assert len(body["items"]) == 1
    _, rest = await api.get("/outbox", "admin", params={"cursor": body["next_cursor"]})
    assert [i["id"] for i in body["items"] + rest["items"]] == sorted(
        [i["id"] for i in body["items"] + rest["items"]], reverse=True
    )
    assert len(rest["items"]) == 1
    assert rest["next_cursor"] is None

    status, body = await api.get("/outbox", "admin", params={"state": "lost"})
    assert (status, body["error"]["details"]["parameter"]) == (400, "state")


async def test_token_use_is_recorded_without_a_write_per_request(
    api: Api, database: Database
) -> None:
    await api.get("/me", "agent")
    [token] = await _rows(
        database, ApiToken, col(ApiToken.name) == "tests", col(ApiToken.last_used_at).is_not(None)
    )
    first_use = token.last_used_at
    await api.get("/me", "agent")
    [again] = await _rows(database, ApiToken, col(ApiToken.id) == token.id)
    assert again.last_used_at == first_use
