"""The web inbox's tests share the whole service with a hand-moved clock, and visitors.

``town`` runs the assembled service (sample configuration) on SQLite and on PostgreSQL with one
agent of the front desk; a ``Visitor`` keeps its own cookies, like one browser.
"""

from __future__ import annotations

import dataclasses
import re
import struct
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from ingest.model import Attachment, Channel, ContactRef, Identity, IdentityKind
from meldpunt.app import RUNTIME, create_app
from store.db import Database
from store.users import create_user
from tests.conftest import Clock
from tests.messages import inbound
from tests.service import sample_config

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[..., Awaitable[Client]]

PASSWORD = "groene-fiets-op-de-markt"


@dataclass
class Visitor:
    """One browser: its own cookies, sent by hand, and redirects never followed."""

    client: Client
    cookies: dict[str, str] = field(default_factory=dict)
    html: str = ""

    async def request(self, method: str, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        response = await self.client.request(
            method, path, cookies=self.cookies, allow_redirects=False, **kwargs
        )
        for name, morsel in response.cookies.items():
            if morsel.value and morsel["max-age"] != "0":
                self.cookies[name] = morsel.value
            else:
                self.cookies.pop(name, None)
        self.html = await response.text()
        return response

    async def get(self, path: str) -> aiohttp.ClientResponse:
        return await self.request("GET", path)

    async def post(self, path: str, data: dict[str, str]) -> aiohttp.ClientResponse:
        return await self.request("POST", path, data=data)

    async def sign_in(
        self, email: str, password: str = PASSWORD, next_page: str = "/"
    ) -> aiohttp.ClientResponse:
        return await self.post("/login", {"email": email, "password": password, "next": next_page})

    def csrf(self) -> str:
        """The CSRF token in the forms of the page seen last."""
        found = re.search(r'name="csrf" value="([^"]+)"', self.html)
        assert found, "no CSRF field on the page"
        return found.group(1)

    def error(self) -> str | None:
        found = re.search(r'<p class="error"[^>]*>(.*?)</p>', self.html, re.S)
        return found.group(1) if found else None

    def notice(self) -> str | None:
        found = re.search(r'<p class="notice"[^>]*>(.*?)</p>', self.html, re.S)
        return found.group(1) if found else None


@dataclass
class Town:
    client: Client
    clock: Clock

    @property
    def db(self) -> Database:
        return self.client.app[RUNTIME].db

    def visitor(self) -> Visitor:
        return Visitor(self.client)

    async def add_user(
        self,
        email: str,
        role: str = "agent",
        departments: tuple[str, ...] = ("front-desk",),
        password: str | None = PASSWORD,
        name: str | None = None,
    ) -> None:
        async with self.db.session() as session:
            await create_user(session, email, role, departments, password, name)

    async def signed_in(self, email: str) -> Visitor:
        visitor = self.visitor()
        response = await visitor.sign_in(email)
        assert response.status == 303, visitor.html
        assert (await visitor.get("/")).status == 200
        return visitor

    async def submit(self, text: str, subject: str, email: str) -> str:
        result = await self.client.app[RUNTIME].intake.submit(
            inbound(text, subject=subject, email=email)
        )
        assert result.ticket_reference is not None
        return result.ticket_reference


@pytest.fixture
async def town(
    aiohttp_client: ClientFactory,
    tmp_path: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    clock: Clock,
) -> Town:
    """The whole service with a hand-moved clock and one agent of the front desk, An."""
    config = sample_config(tmp_path, database_url, monkeypatch)
    client = await aiohttp_client(
        create_app(config, migrate=True, clock=clock), cookie_jar=aiohttp.DummyCookieJar()
    )
    town = Town(client, clock)
    await town.add_user("an@wingene.example", name="An Peeters")
    return town


# An e-mail with HTML and files, as the e-mail connector hands it to intake (used by the
# conversation's tests, over HTTP and in the browser).


def street_lamp_photo(width: int = 240, height: int = 180) -> bytes:
    """A small real PNG: an evening sky, a street and a lamp post whose lamp is out."""

    def pixel(x: int, y: int) -> tuple[int, int, int]:
        if abs(x - width * 0.6) < 3 and height * 0.25 < y < height * 0.8:
            return (40, 40, 45)  # the post
        if abs(x - width * 0.55) < 14 and abs(y - height * 0.25) < 5:
            return (70, 70, 60)  # the dark lamp
        if y >= height * 0.8:
            return (90, 90, 95)  # the street
        shade = y * 120 // height
        return (30 + shade, 50 + shade, 110 + shade // 2)  # the sky

    rows = b"".join(
        b"\x00" + bytes(c for x in range(width) for c in pixel(x, y)) for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


async def submit_mail(
    app: web.Application,
    *,
    text: str,
    subject: str,
    html: str | None = None,
    full_text: str | None = None,
    files: Sequence[tuple[str, str, bytes | None]] = (),
    email: str = "mie.janssens@example.be",
    name: str = "Mie Janssens",
) -> str:
    """An e-mail through intake: ``files`` are (name, media type, bytes) and are stored first,
    as the connector does; bytes of None make a file intake refused. Returns the reference."""
    runtime = app[RUNTIME]
    attachments = []
    for filename, content_type, data in files:
        digest = await runtime.files.put(data) if data is not None else None
        attachments.append(
            Attachment(
                filename=filename,
                content_type=content_type,
                size=len(data) if data is not None else 31_457_280,
                sha256=digest,
                removed_reason=None if data is not None else "larger than 15 MB",
            )
        )
    message = dataclasses.replace(
        inbound(text, subject=subject, email=email, channel=Channel.EMAIL, kind=None),
        sender=ContactRef((Identity(IdentityKind.EMAIL, email),), display_name=name),
        html=html,
        full_text=full_text,
        attachments=tuple(attachments),
    )
    result = await runtime.intake.submit(message)
    assert result.ticket_reference is not None
    return result.ticket_reference
