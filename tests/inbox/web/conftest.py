"""The web inbox's tests share the whole service with a hand-moved clock, and visitors.

``town`` runs the assembled service (sample configuration) on SQLite and on PostgreSQL with one
agent of the front desk; a ``Visitor`` keeps its own cookies, like one browser.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

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
