"""Fixtures for the staff API: the sub-app mounted as the service mounts it, staff, tickets."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from inbox import ApiContext, create_api
from ingest.files import AttachmentStore
from store.db import Database
from store.models import Contact, ContactIdentity, Message, Ticket, TicketEvent, utcnow
from store.users import create_token, create_user

DEPARTMENTS = {
    "front-desk": "Onthaal",
    "technical": "Technische dienst",
    "environment": "Milieu en afval",
}
PREFIX = "/api/v1"


@dataclass(frozen=True)
class Api:
    """A test client for the mounted API with the tokens of a few staff members."""

    client: TestClient[web.Request, web.Application]
    tokens: dict[str, str]
    sub_app: web.Application

    async def call(
        self,
        method: str,
        path: str,
        who: str | None = "admin",
        *,
        json: Any = None,
        params: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        all_headers = dict(headers or {})
        if who is not None:
            all_headers["Authorization"] = f"Bearer {self.tokens[who]}"
        response = await self.client.request(
            method, PREFIX + path, json=json, params=params, headers=all_headers
        )
        assert response.content_type == "application/json", await response.text()
        return response.status, await response.json()

    async def get(self, path: str, who: str | None = "admin", **kw: Any) -> tuple[int, Any]:
        return await self.call("GET", path, who, **kw)

    async def post(
        self, path: str, body: Any, who: str | None = "admin", **kw: Any
    ) -> tuple[int, Any]:
        return await self.call("POST", path, who, json=body, **kw)


Client = TestClient[web.Request, web.Application]
MakeApi = Callable[[ApiContext], Awaitable[Api]]


@pytest.fixture
async def staff_tokens(database: Database) -> dict[str, str]:
    """Admin, operator, an agent of 'technical' and an agent of 'environment', each with a token."""
    staff = {
        "admin": ("admin@town.test", "admin", []),
        "operator": ("operator@town.test", "operator", []),
        "agent": ("Tech.Agent@Town.test", "agent", ["technical"]),
        "env_agent": ("env@town.test", "agent", ["environment"]),
    }
    tokens = {}
    async with database.session() as session:
        for who, (email, role, departments) in staff.items():
            await create_user(session, email, role, departments, None, name=who.title())
            tokens[who] = await create_token(session, email, name="tests")
    return tokens


@pytest.fixture
def make_api(
    staff_tokens: dict[str, str],
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
) -> MakeApi:
    """Mount an API built from ``context`` as the service does, with the staff's tokens."""

    async def make(context: ApiContext) -> Api:
        app = web.Application()
        sub_app = create_api(context)
        app.add_subapp(PREFIX, sub_app)
        return Api(await aiohttp_client(app), staff_tokens, sub_app)

    return make


@pytest.fixture
def files(tmp_path: Path) -> AttachmentStore:
    """The attachment store the API writes reply files to, empty."""
    return AttachmentStore(tmp_path / "attachments")


@pytest.fixture
async def api(database: Database, files: AttachmentStore, make_api: MakeApi) -> Api:
    """The API with the test departments, the default file limit and no retry hook."""
    return await make_api(ApiContext(database, DEPARTMENTS, files))


@dataclass(frozen=True)
class Seeded:
    reference: str
    ticket_id: int
    contact_id: int


MakeTicket = Callable[..., Awaitable[Seeded]]


@pytest.fixture
def make_ticket(database: Database) -> MakeTicket:
    """Insert a ticket with its contact, identities, first inbound message and 'created' event."""
    numbers = itertools.count(1)

    async def make(
        *,
        department: str = "technical",
        status: str = "new",
        kind: str = "report",
        channel: str = "sms",
        subject: str | None = "Lamp stuk in de Kerkstraat",
        identities: Sequence[tuple[str, str]] | None = None,
        reply_channel: str | None = "sms",
        no_reply_address: bool = False,
        created_at: datetime | None = None,
        text: str = "De straatlamp voor nummer 12 brandt niet meer.",
        html: str | None = None,
        full_text: str | None = None,
    ) -> Seeded:
        n = next(numbers)
        # Identities are unique across contacts: every ticket's citizen gets a number of their own.
        phone = f"+32470{n:06d}"
        if identities is None:
            identities = [("phone", phone)]
        reply_address = None if no_reply_address else phone
        at = created_at or utcnow() - timedelta(hours=1)
        async with database.session() as session:
            contact = Contact(display_name=f"Burger {n}", language="nl", created_at=at)
            session.add(contact)
            await session.flush()
            assert contact.id is not None
            for kind_, value in identities:
                session.add(ContactIdentity(contact_id=contact.id, kind=kind_, value=value))
            ticket = Ticket(
                reference=f"MP-2026-{n:05d}",
                kind=kind,
                status=status,
                department=department,
                origin_channel=channel,
                contact_id=contact.id,
                reply_channel=reply_channel,
                reply_address=reply_address,
                subject=subject,
                created_at=at,
                updated_at=at,
            )
            session.add(ticket)
            await session.flush()
            assert ticket.id is not None
            session.add(
                Message(
                    ticket_id=ticket.id,
                    direction="in",
                    channel=channel,
                    external_id=f"ext-{n}",
                    sender=reply_address,
                    subject=subject,
                    text=text,
                    html=html,
                    full_text=full_text,
                    delivery_status="received",
                    created_at=at,
                )
            )
            session.add(
                TicketEvent(
                    ticket_id=ticket.id,
                    type="created",
                    data={"channel": channel},
                    created_at=at,
                )
            )
            return Seeded(ticket.reference, ticket.id, contact.id)

    return make
